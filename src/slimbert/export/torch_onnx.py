"""ONNX export of a Hugging Face sequence classifier with `torch.onnx.export`, for where optimum's
exporter is not installed.

optimum-onnx 0.1.0, the only release line of optimum's ONNX exporter, requires
transformers<4.58, so on the transformers 5 line slimbert exports without it. This module traces
the same graph optimum's exporter does for text classification (the TorchScript exporter, the
model's forward with the padding mask as an input, opset 18, constant folding) and writes the
same folder, so ONNX Runtime's fusions, the parity gates, the manifest, bench, serve and optimum's
`ORTModelForSequenceClassification.from_pretrained(folder)` treat both alike:

    out/
      model.onnx    inputs: the model inputs, int64 (batch_size, sequence_length), in the order
                    the model's forward() takes them; output: logits (batch_size, C) float32
      config.json   the model's own
      (tokenizer files: written by export/onnx.py)
"""

from __future__ import annotations

import importlib.util
import inspect
import warnings
from pathlib import Path

import torch
from torch import nn

from slimbert.errors import SlimbertError
from slimbert.files import ONNX_FILE

EXPORTER = "torch.onnx.export (TorchScript)"
# optimum's default for encoder classifiers, so both exporters write the same opset
DEFAULT_OPSET = 18
DYNAMIC = ("batch_size", "sequence_length")


def optimum_exporter_installed() -> bool:
    """Whether optimum's ONNX exporter (the optimum-onnx distribution) can be imported."""
    try:
        return importlib.util.find_spec("optimum.exporters.onnx") is not None
    except ModuleNotFoundError:  # no optimum at all: its parent package is missing
        return False


def forward_order(model: nn.Module, names: list[str]) -> list[str]:
    """`names` in the order `model.forward` takes them, as ONNX graph inputs are positional.
    A name the forward does not take is an error: the graph could not be fed it."""
    parameters = list(inspect.signature(model.forward).parameters)
    unknown = [name for name in names if name not in parameters]
    if unknown:
        raise SlimbertError(
            f"{type(model).__name__}.forward takes no {', '.join(unknown)}; export with the "
            "inputs the model takes"
        )
    return [name for name in parameters if name in names]


class _Logits(nn.Module):
    """Positional inputs in forward order → logits (B, C): what the tracer records."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True)), return_dict=True).logits


def example_inputs(names: list[str], vocab_size: int) -> tuple[torch.Tensor, ...]:
    """A (2, 8) int64 batch whose second row is padded: a batch of 2 keeps the tracer from
    specialising on a size of 1, and the padding keeps the mask a live input of the graph
    (an all-ones mask may be skipped by attention code that checks for it)."""
    batch, length = 2, 8
    values = {
        "input_ids": torch.arange(batch * length).reshape(batch, length) % max(vocab_size, 1),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
    }
    values["attention_mask"][1, length // 2 :] = 0
    return tuple(values.get(name, torch.ones(batch, length, dtype=torch.long)) for name in names)


def export_classifier(
    model: nn.Module, input_names: list[str], out: Path, opset: int | None = None
) -> str:
    """Trace `model` (a transformers sequence classifier) into out/model.onnx and write its
    config.json; returns the exporter's name for the manifest. `input_names` are the model
    inputs the pipeline feeds; the graph takes them in forward order."""
    names = forward_order(model, input_names)
    model = model.to("cpu").eval()
    example = example_inputs(names, int(getattr(model.config, "vocab_size", 0) or 0))
    axes = {name: dict(enumerate(DYNAMIC)) for name in names} | {"logits": {0: DYNAMIC[0]}}
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter warns that it is legacy, and the tracer about Python
        # branches on shapes; the parity gate that follows the export is what proves the graph
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(model, names),
            example,
            str(out / ONNX_FILE),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset or DEFAULT_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    model.config.save_pretrained(str(out))
    return EXPORTER
