"""ONNX export of models optimum does not know: the non-transformer students (textcnn, bilstm,
tree from networks/modules.py).

The folder matches optimum's layout so everything downstream (parity check, manifest, bench,
serve) treats it alike:

    out/
      model.onnx     inputs: the tokenizer's model_input_names, int64 (batch_size, sequence_length)
                     output: logits (batch_size, C)
      config.json    the student's own (with slimbert_architecture and id2label)
      tokenizer files

A student may ignore an input (TextCNN never reads token_type_ids); the tracer drops unused
inputs, so they are declared again afterwards: every export takes the tokenizer's full output,
as the HF exports do.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from slimbert.errors import SlimbertError
from slimbert.files import CONFIG_FILE, ONNX_FILE

EXPORTER = "torch.onnx.export (TorchScript)"
DEFAULT_OPSET = 17
DYNAMIC = ("batch_size", "sequence_length")


class _Logits(nn.Module):
    """Positional inputs in the tokenizer's order → logits (B, C): what the tracer records."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).logits


def _declare_inputs(onnx_path: Path, names: list[str]) -> None:
    """Put back any tokenizer input the tracer dropped, keeping the tokenizer's order."""
    graph = onnx.load(str(onnx_path))
    present = {value.name: value for value in graph.graph.input}
    if all(name in present for name in names):
        return
    ordered = [
        present.get(name)
        or onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, list(DYNAMIC))
        for name in names
    ]
    ordered += [value for name, value in present.items() if name not in names]
    del graph.graph.input[:]
    graph.graph.input.extend(ordered)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(onnx_path))


def export_student(
    model: nn.Module, tokenizer, model_dir: Path, out: Path, opset: int | None = None
) -> str:
    """Write model.onnx, config.json and the tokenizer for the student in `model_dir` into `out`
    (an existing, empty staging folder); returns the exporter's name for the manifest."""
    names = list(tokenizer.model_input_names)
    if "input_ids" not in names:
        raise SlimbertError(
            f"{model_dir}: the tokenizer gives {names}, no input_ids; a student reads token ids"
        )
    model = model.to("cpu").eval()
    # a batch of 2 × 8 keeps the tracer from specialising on a size of 1
    example = tuple(
        torch.ones(2, 8, dtype=torch.long)
        if name != "token_type_ids"
        else torch.zeros(2, 8, dtype=torch.long)
        for name in names
    )
    axes = {name: dict(enumerate(DYNAMIC)) for name in names} | {"logits": {0: DYNAMIC[0]}}
    onnx_path = out / ONNX_FILE
    with warnings.catch_warnings():
        # the TorchScript exporter warns that it is legacy; its LSTM warning is handled by
        # BiLSTM's explicit initial states
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(model, names),
            example,
            str(onnx_path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset or DEFAULT_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    _declare_inputs(onnx_path, names)
    shutil.copy2(model_dir / CONFIG_FILE, out / CONFIG_FILE)
    tokenizer.save_pretrained(str(out))
    return EXPORTER
