"""The Python API: an export folder as an in-process predictor.

    import slimbert

    predictor = slimbert.load("runs/kd3-onnx")
    predictor("a gripping, funny film")              # -> Prediction(label='1', scores={...})
    predictor(["a gripping film", "dull"])           # -> [Prediction, Prediction]
    predictor(("The cat sat.", "A cat was sitting."))  # a pair -> Prediction
    predictor([("a", "b"), ("c", "d")], batch_size=64)

The predictor runs the server's own model (serve/model.py `ServedModel`): the same folder checks
(the manifest's hash, or a logged warning for an ONNX folder slimbert did not export), the same
Rust tokenizer set-up (truncation to the export's max_length, padding to each batch's longest)
and the same ONNX Runtime session options (export/runtime.py `OnnxClassifier`, which
`slimbert bench` times). Inputs are cut into batches of `batch_size` in the order given.
Neither torch nor transformers is imported.

`pipeline(EXPORT_DIR)` gives a `transformers.pipeline("text-classification")` over the same
folder through optimum's ORTModelForSequenceClassification, for code written against
transformers; it truncates at the same max_length but runs optimum's session, not slimbert's.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slimbert.errors import SlimbertError
from slimbert.serve.folder import PAIR, SINGLE, read_folder
from slimbert.serve.model import Item, ModelIdentity, ServedModel

Input = str | tuple[str, str]


@dataclass(frozen=True)
class Prediction:
    """One input's answer.

    label:      the most probable class; None for a regression model
    scores:     probability of each class (softmax, summing to 1), or {"score": value}
    tokens:     tokens the model saw, after truncation
    truncated:  the input was longer than the export's max_length and was cut
    value:      regression models only: the predicted value
    """

    label: str | None
    scores: dict[str, float] = field(repr=False)
    tokens: int
    truncated: bool
    value: float | None = None


def _item(value, index: int | None) -> Item:
    where = "the input" if index is None else f"input [{index}]"
    if isinstance(value, str):
        return Item(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(part, str) for part in value)
    ):
        return Item(value[0], value[1])
    raise SlimbertError(
        f"{where} is {type(value).__name__}; give a text, a (text, text) pair, or a list of them"
    )


class Predictor:
    """Texts or (text, text) pairs in, `Prediction`s out. Safe to call from several threads
    (calls take turns on the one session, which uses all its threads per call)."""

    def __init__(self, model: ServedModel, batch_size: int = 32):
        if batch_size < 1:
            raise SlimbertError(f"batch_size {batch_size}: must be at least 1")
        self.model = model
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def identity(self) -> ModelIdentity:
        """Name, sha256 of model.onnx, task, labels, max_length, single/pair/any inputs."""
        return self.model.identity

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.identity.labels

    def __repr__(self) -> str:
        identity = self.identity
        return (
            f"Predictor({identity.name!r}, {identity.task}, labels={list(identity.labels)}, "
            f"inputs={identity.inputs}, max_length={identity.max_length})"
        )

    def predict(
        self, inputs: Input | Sequence[Input], batch_size: int | None = None
    ) -> Prediction | list[Prediction]:
        """A text or a pair gives one Prediction; a list of them gives a list, in order.

        Pairs are tuples (or two-element lists inside the list). A model trained on single
        texts refuses pairs and a pair model refuses single texts, as the server does."""
        single = isinstance(inputs, str) or (
            isinstance(inputs, tuple)
            and len(inputs) == 2
            and all(isinstance(p, str) for p in inputs)
        )
        if single:
            items = [_item(inputs, None)]
        elif isinstance(inputs, Sequence):
            items = [_item(value, index) for index, value in enumerate(inputs)]
        else:
            raise SlimbertError(
                f"the input is {type(inputs).__name__}; "
                "give a text, a (text, text) pair, or a list of them"
            )
        self._check_kinds(items)
        size = batch_size or self.batch_size
        answers: list[dict] = []
        with self._lock:
            for start in range(0, len(items), size):
                answers += self.model.predict(items[start : start + size])
        predictions = [Prediction(**answer) for answer in answers]
        return predictions[0] if single else predictions

    __call__ = predict

    def _check_kinds(self, items: list[Item]) -> None:
        takes = self.identity.inputs
        for index, item in enumerate(items):
            if takes == SINGLE and item.pair is not None:
                raise SlimbertError(
                    f"input [{index}] is a pair but {self.identity.name} was trained on single "
                    "texts; give texts"
                )
            if takes == PAIR and item.pair is None:
                raise SlimbertError(
                    f"input [{index}] is a single text but {self.identity.name} was trained on "
                    "pairs; give (text, text) tuples"
                )


def load(
    export_dir: str | Path,
    *,
    provider: str = "cpu",
    threads: int | None = None,
    batch_size: int = 32,
    name: str | None = None,
) -> Predictor:
    """A predictor over an export folder (`slimbert export`'s, or any ONNX sequence-classification
    folder with config.json and tokenizer files, with a logged warning).

    provider:    "cpu" or "cuda" (fails clearly when CUDAExecutionProvider is missing)
    threads:     ONNX Runtime intra-op threads (default: all cores)
    batch_size:  most inputs per session call
    name:        the model's name in its identity (default: the folder's name)
    """
    return Predictor(ServedModel(export_dir, provider, threads, name), batch_size)


def pipeline(export_dir: str | Path, **kwargs):
    """`transformers.pipeline("text-classification")` over an export folder, through optimum's
    ORTModelForSequenceClassification; truncates at the export's max_length. Extra keyword
    arguments go to `transformers.pipeline` (top_k, device, ...)."""
    folder = Path(export_dir)
    settings = read_folder(folder)
    # optimum and transformers cost seconds to import: only this entry point pays for them
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError as exc:
        raise SlimbertError(
            f"pipeline() needs {exc.name} (optimum-onnx); install it with `pip install -e .`"
        ) from None
    from transformers import AutoTokenizer
    from transformers import pipeline as hf_pipeline

    model = ORTModelForSequenceClassification.from_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    tokenizer.model_max_length = settings.max_length
    return hf_pipeline(
        "text-classification",
        model=model,
        tokenizer=tokenizer,
        truncation=True,
        trust_remote_code=False,
        **kwargs,
    )
