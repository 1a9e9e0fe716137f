"""The served model: an export folder loaded once, answering batches of raw texts.

An export folder is what `slimbert export` writes (model.onnx, config.json, tokenizer files,
manifest.json, slimbert.json). Its identity is its name plus the sha256 of model.onnx; the hash
is checked against the manifest on load, so a server never answers under the name of a model it
is not running.

`ServedModel.predict` is synchronous and meant for one worker thread: a fast tokenizer keeps
its truncation/padding state on the Rust object and refuses concurrent callers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slimbert.data import REGRESSION
from slimbert.errors import SlimbertError
from slimbert.export.onnx import MANIFEST_FILE, ONNX_FILE
from slimbert.export.runtime import OnnxClassifier
from slimbert.io import sha256_file
from slimbert.models import load_tokenizer, read_metadata

SINGLE, PAIR, ANY = "single", "pair", "any"


@dataclass(frozen=True)
class Item:
    """One thing to classify: a text, or a text and its second text."""

    text: str
    pair: str | None = None


@dataclass(frozen=True)
class ModelIdentity:
    """What a response says about the model that answered it.

    name:        the export folder's name unless given
    sha256:      hash of model.onnx, as recorded in the manifest and checked on load
    task:        classification or regression
    labels:      class labels in logit order (["score"] for regression)
    max_length:  tokens per input; longer inputs are truncated and flagged
    inputs:      single, pair, or any (the folder does not say whether it was trained on pairs)
    provider:    ONNX Runtime provider, cpu or cuda
    threads:     ONNX Runtime intra-op threads
    """

    name: str
    sha256: str
    task: str
    labels: tuple[str, ...]
    max_length: int
    inputs: str
    provider: str
    threads: int | None

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["labels"] = list(self.labels)
        return payload


def _read_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SlimbertError(f"{path}: unreadable ({exc}); re-run `slimbert export`") from None
    if not isinstance(payload, dict):
        raise SlimbertError(f"{path}: not a JSON object; re-run `slimbert export`")
    return payload


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) logits in float64, so scores sum to 1 within 1e-12."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class ServedModel:
    """Tokenizer + ONNX Runtime session of one export folder.

    `predict(items)` tokenises the items together, padded to the batch's own longest sequence
    (never to max_length), runs the session once per input kind and returns one JSON-ready
    prediction per item, in order.
    """

    def __init__(self, export_dir: str | Path, provider: str = "cpu", threads: int | None = None, name: str | None = None):
        folder = Path(export_dir)
        if not folder.is_dir():
            raise SlimbertError(f"{folder}: no such directory; give a folder written by `slimbert export`")
        for required in (ONNX_FILE, MANIFEST_FILE, "config.json"):
            if not (folder / required).is_file():
                raise SlimbertError(f"{folder}: no {required}; give a folder written by `slimbert export`")
        manifest = _read_json(folder / MANIFEST_FILE)
        recorded = (manifest.get("files") or {}).get(ONNX_FILE, {}).get("sha256")
        if not recorded:
            raise SlimbertError(f"{folder / MANIFEST_FILE}: records no sha256 for {ONNX_FILE}; re-run `slimbert export`")
        actual = sha256_file(folder / ONNX_FILE)
        if actual != recorded:
            raise SlimbertError(
                f"{folder / ONNX_FILE}: sha256 {actual[:12]}… differs from the manifest's {recorded[:12]}…; "
                "the model was changed after export; re-run `slimbert export`"
            )
        task = manifest.get("task") or "classification"
        id2label = manifest.get("id2label") or _read_json(folder / "config.json").get("id2label") or {}
        if task == REGRESSION:
            labels: tuple[str, ...] = ("score",)
        else:
            if not id2label:
                raise SlimbertError(f"{folder}: no id2label in manifest.json or config.json; re-run `slimbert export`")
            labels = tuple(str(id2label[key]) for key in sorted(id2label, key=int))
        max_length = manifest.get("max_length")
        if not isinstance(max_length, int) or max_length < 1:
            raise SlimbertError(f"{folder / MANIFEST_FILE}: no max_length; re-run `slimbert export`")
        pair = read_metadata(folder).get("data", {}).get("pair")
        inputs = ANY if pair is None else (PAIR if pair else SINGLE)

        self.folder = folder
        self.manifest = manifest
        self.tokenizer = load_tokenizer(folder)
        self.classifier = OnnxClassifier(folder / ONNX_FILE, provider, threads)
        self.identity = ModelIdentity(
            name=name or folder.resolve().name,
            sha256=actual,
            task=task,
            labels=labels,
            max_length=max_length,
            inputs=inputs,
            provider=provider,
            threads=threads,
        )

    def encode(self, items: list[Item]) -> dict[str, np.ndarray]:
        """Tokenise items of one kind together: each array (B, L), L = the longest item, ≤ max_length."""
        texts = [item.text for item in items]
        pairs = [item.pair for item in items] if items[0].pair is not None else None
        return self.tokenizer(
            texts,
            pairs,
            truncation=True,
            max_length=self.identity.max_length,
            padding=True,
            return_tensors="np",
        )

    def predict(self, items: list[Item]) -> list[dict]:
        """One prediction per item: {"label", "scores", "tokens", "truncated"} (+ "value" for regression)."""
        results: list[dict | None] = [None] * len(items)
        # A tokenizer call takes all single texts or all pairs; a folder that does not say which
        # it was trained on may see both kinds in one batch.
        kinds: dict[bool, list[int]] = {}
        for index, item in enumerate(items):
            kinds.setdefault(item.pair is not None, []).append(index)
        for indices in kinds.values():
            group = [items[i] for i in indices]
            encoded = self.encode(group)
            logits = self.classifier(encoded)  # (B, C)
            tokens = encoded["attention_mask"].sum(axis=1)  # (B,)
            truncated = [bool(encoding.overflowing) for encoding in encoded.encodings]
            for row, index in enumerate(indices):
                results[index] = self._describe(logits[row], int(tokens[row]), truncated[row])
        return results  # type: ignore[return-value]

    def _describe(self, logits: np.ndarray, tokens: int, truncated: bool) -> dict:
        if self.identity.task == REGRESSION:
            value = float(logits[0])
            return {"label": None, "value": value, "scores": {"score": value}, "tokens": tokens, "truncated": truncated}
        probabilities = softmax(logits[None, :])[0]  # (C,)
        best = int(probabilities.argmax())
        return {
            "label": self.identity.labels[best],
            "scores": {label: float(p) for label, p in zip(self.identity.labels, probabilities, strict=True)},
            "tokens": tokens,
            "truncated": truncated,
        }

    def warm_up(self, batch_size: int) -> None:
        """Run batch 1 and a full batch at max_length so the first real requests pay no set-up."""
        filler = " ".join(["the"] * (self.identity.max_length * 2))
        second = filler if self.identity.inputs == PAIR else None
        self.predict([Item("warm up", "warm up" if second else None)])
        self.predict([Item(filler, second)] * batch_size)
