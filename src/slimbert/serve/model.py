"""The served model: an export folder loaded once, answering batches of raw texts.

An export folder is what `slimbert export` writes (model.onnx, config.json, tokenizer files,
manifest.json, slimbert.json). Its identity is its name plus the sha256 of model.onnx; the hash
is checked against the manifest on load, so a server never answers under the name of a model it
is not running.

Tokenisation uses the folder's tokenizer.json through the `tokenizers` library directly, set up
the way transformers' fast tokenizer sets itself up for `truncation=True, padding=True` (longest
first, the folder's padding side and pad token, padded to the batch's longest). That keeps
torch and transformers out of the server process (seconds of start-up and hundreds of MB), and
with its settings fixed at load the Rust tokenizer is safe to call from any thread. A folder
without tokenizer.json falls back to transformers' AutoTokenizer for the same Rust object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from slimbert.data import REGRESSION
from slimbert.errors import SlimbertError
from slimbert.export.runtime import OnnxClassifier
from slimbert.files import sha256_file

# The names slimbert.export.onnx and slimbert.models write; imported from there they would pull
# torch into the server (tests check that they agree).
ONNX_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
METADATA_FILE = "slimbert.json"
TOKENIZER_FILE = "tokenizer.json"

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


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json stores it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def load_tokenizer(folder: Path, max_length: int):
    """The folder's Rust tokenizer, truncating to `max_length` and padding to each batch's
    longest."""
    if (folder / TOKENIZER_FILE).is_file():
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    else:
        # only for folders without tokenizer.json: transformers costs the server seconds to load
        from transformers import AutoTokenizer

        wrapped = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        if not wrapped.is_fast:
            raise SlimbertError(
                f"{folder}: no {TOKENIZER_FILE} and the tokenizer has no fast version; "
                "re-export with a fast tokenizer"
            )
        tokenizer = wrapped.backend_tokenizer
    settings = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            settings.update(_read_json(folder / name))
    pad_token = (
        _token_text(settings.get("pad_token"))
        or (tokenizer.padding or {}).get("pad_token")
        or "[PAD]"
    )
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise SlimbertError(
            f"{folder}: pad token {pad_token!r} is not in the vocabulary; "
            "set pad_token in tokenizer_config.json"
        )
    tokenizer.enable_truncation(
        max_length,
        stride=0,
        strategy="longest_first",
        direction=settings.get("truncation_side", "right"),
    )
    tokenizer.enable_padding(
        direction=settings.get("padding_side", "right"),
        pad_id=pad_id,
        pad_token=pad_token,
        pad_type_id=0,
        length=None,
    )
    return tokenizer


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) logits in float64, so scores sum to 1 within 1e-12."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class ServedModel:
    """Tokenizer + ONNX Runtime session of one export folder.

    `predict(items)` tokenises the items together, padded to the batch's own longest sequence
    (never to max_length), runs the session once per input kind and returns one JSON-ready
    prediction per item, in order. It is meant for one worker thread at a time (the batcher's).
    """

    def __init__(
        self,
        export_dir: str | Path,
        provider: str = "cpu",
        threads: int | None = None,
        name: str | None = None,
    ):
        folder = Path(export_dir)
        if not folder.is_dir():
            raise SlimbertError(
                f"{folder}: no such directory; give a folder written by `slimbert export`"
            )
        for required in (ONNX_FILE, MANIFEST_FILE, "config.json"):
            if not (folder / required).is_file():
                raise SlimbertError(
                    f"{folder}: no {required}; give a folder written by `slimbert export`"
                )
        manifest = _read_json(folder / MANIFEST_FILE)
        recorded = (manifest.get("files") or {}).get(ONNX_FILE, {}).get("sha256")
        if not recorded:
            raise SlimbertError(
                f"{folder / MANIFEST_FILE}: records no sha256 for {ONNX_FILE}; "
                "re-run `slimbert export`"
            )
        actual = sha256_file(folder / ONNX_FILE)
        if actual != recorded:
            raise SlimbertError(
                f"{folder / ONNX_FILE}: sha256 {actual[:12]}… differs from the manifest's "
                f"{recorded[:12]}…; "
                "the model was changed after export; re-run `slimbert export`"
            )
        task = manifest.get("task") or "classification"
        id2label = (
            manifest.get("id2label") or _read_json(folder / "config.json").get("id2label") or {}
        )
        if task == REGRESSION:
            labels: tuple[str, ...] = ("score",)
        else:
            if not id2label:
                raise SlimbertError(
                    f"{folder}: no id2label in manifest.json or config.json; "
                    "re-run `slimbert export`"
                )
            labels = tuple(str(id2label[key]) for key in sorted(id2label, key=int))
        max_length = manifest.get("max_length")
        if not isinstance(max_length, int) or max_length < 1:
            raise SlimbertError(
                f"{folder / MANIFEST_FILE}: no max_length; re-run `slimbert export`"
            )
        metadata = _read_json(folder / METADATA_FILE) if (folder / METADATA_FILE).is_file() else {}
        pair = (metadata.get("data") or {}).get("pair")
        inputs = ANY if pair is None else (PAIR if pair else SINGLE)

        self.folder = folder
        self.manifest = manifest
        self.tokenizer = load_tokenizer(folder, max_length)
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

    def encode(self, items: list[Item]) -> tuple[dict[str, np.ndarray], list[bool]]:
        """Tokenise items of one kind together: arrays (B, L), L = the longest item (≤ max_length),
        and whether each item was truncated."""
        if items[0].pair is None:
            encodings = self.tokenizer.encode_batch([item.text for item in items])
        else:
            encodings = self.tokenizer.encode_batch([(item.text, item.pair) for item in items])
        features = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return features, [bool(e.overflowing) for e in encodings]

    def predict(self, items: list[Item]) -> list[dict]:
        """One prediction per item: {"label", "scores", "tokens", "truncated"} (+ "value" for
        regression)."""
        results: list[dict | None] = [None] * len(items)
        # One tokenizer call takes all single texts or all pairs; a folder that does not say
        # which it was trained on may see both kinds in one batch.
        kinds: dict[bool, list[int]] = {}
        for index, item in enumerate(items):
            kinds.setdefault(item.pair is not None, []).append(index)
        for indices in kinds.values():
            features, truncated = self.encode([items[i] for i in indices])
            logits = self.classifier(features)  # (B, C)
            tokens = features["attention_mask"].sum(axis=1)  # (B,)
            for row, index in enumerate(indices):
                results[index] = self._describe(logits[row], int(tokens[row]), truncated[row])
        return results  # type: ignore[return-value]

    def _describe(self, logits: np.ndarray, tokens: int, truncated: bool) -> dict:
        if self.identity.task == REGRESSION:
            value = float(logits[0])
            return {
                "label": None,
                "value": value,
                "scores": {"score": value},
                "tokens": tokens,
                "truncated": truncated,
            }
        probabilities = softmax(logits[None, :])[0]  # (C,)
        best = int(probabilities.argmax())
        return {
            "label": self.identity.labels[best],
            "scores": {
                label: float(p)
                for label, p in zip(self.identity.labels, probabilities, strict=True)
            },
            "tokens": tokens,
            "truncated": truncated,
        }

    def warm_up(self, batch_size: int) -> None:
        """Run batch 1 and a full batch at max_length so the first real requests pay no set-up."""
        filler = " ".join(["the"] * (self.identity.max_length * 2))
        second = filler if self.identity.inputs == PAIR else None
        self.predict([Item("warm up", "warm up" if second else None)])
        self.predict([Item(filler, second)] * batch_size)
