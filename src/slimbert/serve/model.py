"""The served model: an export folder loaded once, answering batches of raw texts.

serve/folder.py reads the folder (slimbert's export with its manifest, or any ONNX
sequence-classification folder, served with a warning) and sets up its tokenizer; this module
holds the ONNX Runtime session and turns logits into answers. The session is fed exactly the
graph's inputs: a model exported without token_type_ids (DistilBERT, RoBERTa) is never given
them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from slimbert.data import REGRESSION
from slimbert.errors import SlimbertError
from slimbert.export.runtime import OnnxClassifier
from slimbert.files import ONNX_FILE
from slimbert.serve.folder import PAIR, load_tokenizer, read_folder

# what the tokenizer gives; a graph asking for anything else cannot be fed
TOKENIZER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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
    validated:   True for a slimbert export (manifest, parity record); False for any other ONNX
                 folder, served as it is
    """

    name: str
    sha256: str
    task: str
    labels: tuple[str, ...]
    max_length: int
    inputs: str
    provider: str
    threads: int | None
    validated: bool = True

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["labels"] = list(self.labels)
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
        settings = read_folder(folder)
        self.folder = folder
        self.tokenizer = load_tokenizer(folder, settings.max_length)
        self.classifier = OnnxClassifier(folder / ONNX_FILE, provider, threads)
        self._check_graph(folder, len(settings.labels))
        self.identity = ModelIdentity(
            name=name or folder.resolve().name,
            sha256=settings.sha256,
            task=settings.task,
            labels=settings.labels,
            max_length=settings.max_length,
            inputs=settings.inputs,
            provider=provider,
            threads=threads,
            validated=settings.validated,
        )

    def _check_graph(self, folder: Path, num_labels: int) -> None:
        """The graph takes only what the tokenizer gives, as int64, and answers (B, labels)."""
        session = self.classifier.session
        for graph_input in session.get_inputs():
            if graph_input.name not in TOKENIZER_INPUTS or graph_input.type != "tensor(int64)":
                raise SlimbertError(
                    f"{folder / ONNX_FILE}: input {graph_input.name!r} ({graph_input.type}) is "
                    f"not one the tokenizer gives ({', '.join(TOKENIZER_INPUTS)}, int64); "
                    "export a sequence classifier with those inputs"
                )
        width = session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != num_labels:
            raise SlimbertError(
                f"{folder / ONNX_FILE}: the graph answers {width} scores per input but "
                f"config.json names {num_labels} labels; fix id2label in config.json"
            )

    def encode(self, items: list[Item]) -> tuple[dict[str, np.ndarray], list[bool]]:
        """Tokenise items of one kind together: the graph's inputs, each (B, L), L = the
        longest item (≤ max_length), and whether each item was truncated."""
        if items[0].pair is None:
            encodings = self.tokenizer.encode_batch([item.text for item in items])
        else:
            encodings = self.tokenizer.encode_batch([(item.text, item.pair) for item in items])
        columns = {
            "input_ids": lambda e: e.ids,
            "attention_mask": lambda e: e.attention_mask,
            "token_type_ids": lambda e: e.type_ids,
        }
        features = {
            name: np.array([columns[name](e) for e in encodings], dtype=np.int64)
            for name in self.classifier.input_names
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
            tokens = self._tokens(features)  # (B,)
            for row, index in enumerate(indices):
                results[index] = self._describe(logits[row], int(tokens[row]), truncated[row])
        return results  # type: ignore[return-value]

    def _tokens(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Tokens each row holds, (B,): from the mask, or the ids up to padding where a graph
        takes no mask."""
        if "attention_mask" in features:
            return features["attention_mask"].sum(axis=1)
        padding = self.tokenizer.padding or {}
        return (features["input_ids"] != padding.get("pad_id", 0)).sum(axis=1)

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
