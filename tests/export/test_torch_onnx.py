"""The export without optimum (export/torch_onnx.py): the graph torch.onnx.export traces, held to
the same parity gates and fusion counts as optimum's, and the folder loading in optimum's
ORTModel where optimum-onnx is installed. On the transformers 5 line (no optimum-onnx) every
export of the suite takes this path; these tests force it on the 4.x line too."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import build_bert

from slimbert.errors import SlimbertError
from slimbert.export import torch_onnx
from slimbert.export.onnx import ExportOptions, export
from slimbert.export.optimize import OptimizeConfig
from slimbert.export.quantize import DynamicQuantConfig, StaticQuantConfig
from slimbert.export.runtime import OnnxClassifier
from slimbert.models import load_classifier, load_tokenizer

LAYERS = 2
OPTIMUM = torch_onnx.optimum_exporter_installed()
NEEDS_OPTIMUM = pytest.mark.skipif(
    not OPTIMUM,
    reason="optimum-onnx is not installed (it requires transformers<4.58; the transformers 5 "
    "line exports with torch.onnx)",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_bert(tmp_path_factory.mktemp("tiny2"), layers=LAYERS, hidden=32, heads=4)


@pytest.fixture
def without_optimum(monkeypatch):
    monkeypatch.setattr(torch_onnx, "optimum_exporter_installed", lambda: False)


@pytest.fixture(scope="module")
def torch_export(tmp_path_factory, tiny, sst2_files) -> tuple[Path, dict]:
    """The plain fp32 export through torch.onnx, whatever is installed."""
    out = tmp_path_factory.mktemp("torch") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch_onnx, "optimum_exporter_installed", lambda: False)
        manifest = export(tiny, sst2_files[1], out)
    return out, manifest


def test_torch_export_signature_and_parity(torch_export):
    out, manifest = torch_export
    assert manifest["exporter"] == "torch.onnx.export (TorchScript) (eager attention)"
    assert [i["name"] for i in manifest["inputs"]] == [
        "input_ids",
        "attention_mask",
        "token_type_ids",
    ]
    assert all(i["dtype"] == "int64" for i in manifest["inputs"])
    assert manifest["dynamic_axes"]["input_ids"] == ["batch_size", "sequence_length"]
    assert [o["name"] for o in manifest["outputs"]] == ["logits"]
    assert manifest["opset"] == torch_onnx.DEFAULT_OPSET
    assert manifest["validation"]["label_agreement"] == 100.0
    assert manifest["validation"]["max_abs_diff"] <= 1e-4
    assert manifest["validation"]["examples"] == 24
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "0", "1": "1"}
    assert (out / "tokenizer.json").is_file() or (out / "vocab.txt").is_file()


def test_torch_export_runs_other_batch_sizes_and_lengths(torch_export, tiny):
    """Dynamic axes: a (3, 11) batch with padding, never seen by the tracer, matches PyTorch."""
    out, _ = torch_export
    tokenizer = load_tokenizer(tiny)
    texts = ["good great movie", "bad awful plot was very boring and ugly", "film"]
    encoded = tokenizer(texts, padding="max_length", max_length=11, return_tensors="np")
    onnx_logits = OnnxClassifier(out / "model.onnx", "cpu", threads=1)(dict(encoded))
    with torch.no_grad():
        torch_logits = load_classifier(tiny)(
            **tokenizer(texts, padding="max_length", max_length=11, return_tensors="pt")
        )
    assert onnx_logits.shape == (3, 2)
    assert np.abs(onnx_logits - torch_logits.logits.numpy()).max() <= 1e-4


def test_torch_export_fuses_and_quantizes_like_optimum(tiny, sst2_files, tmp_path, without_optimum):
    """The CPU fusion preset finds every layer's attention in the traced graph, and dynamic
    int8 quantizes the fused graph (Attention → QAttention); each step passes its gate."""
    options = ExportOptions(optimize=OptimizeConfig.cpu(), quantize=DynamicQuantConfig())
    manifest = export(tiny, sst2_files[1], tmp_path / "int8", options=options)
    fused, quantized = manifest["optimizations"]
    assert {op: n for op, n in fused["fusions"]["counts"].items() if n} == {
        "Attention": LAYERS,
        "EmbedLayerNormalization": 1,
        "BiasGelu": LAYERS,
    }
    assert quantized["quantized_ops"]["QAttention"] == LAYERS
    assert [s["step"] for s in manifest["stages"]] == ["export", "optimize", "quantize"]
    assert manifest["stages"][0]["max_abs_diff"] <= 1e-4
    assert manifest["precision"] == "int8"


def test_torch_export_quantizes_static(tiny, sst2_files, tmp_path, without_optimum):
    options = ExportOptions(quantize=StaticQuantConfig(calibration_file=sst2_files[0], examples=16))
    manifest = export(tiny, sst2_files[1], tmp_path / "static", options=options)
    counts = manifest["optimizations"][0]["quantized_ops"]
    assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > 0
    assert manifest["optimizations"][0]["calibration_examples"] == 16
    assert manifest["stages"][0]["max_abs_diff"] <= 1e-4


def test_sdpa_torch_export_passes_the_gate(tiny, sst2_files, tmp_path, without_optimum):
    manifest = export(
        tiny, sst2_files[1], tmp_path / "sdpa", options=ExportOptions(attention="sdpa")
    )
    assert manifest["exporter"].endswith("(sdpa attention)")
    assert manifest["validation"]["max_abs_diff"] <= 1e-4


def test_forward_order_follows_the_forward_and_refuses_what_it_does_not_take(tiny):
    model = load_classifier(tiny)
    names = ["token_type_ids", "attention_mask", "input_ids"]
    assert torch_onnx.forward_order(model, names) == [
        "input_ids",
        "attention_mask",
        "token_type_ids",
    ]
    with pytest.raises(SlimbertError, match="forward takes no pixel_values"):
        torch_onnx.forward_order(model, ["input_ids", "pixel_values"])


@NEEDS_OPTIMUM
def test_torch_export_loads_in_optimum_and_traces_optimums_graph(
    torch_export, tiny, sst2_files, tmp_path
):
    """The same folder optimum's own exporter writes: ORTModel loads it and gives PyTorch's
    logits, and both exporters trace the same graph (op for op, same opset)."""
    from optimum.onnxruntime import ORTModelForSequenceClassification

    out, manifest = torch_export
    tokenizer = load_tokenizer(out)
    batch = tokenizer(["good great movie", "bad film"], padding=True, return_tensors="pt")
    logits = ORTModelForSequenceClassification.from_pretrained(str(out))(**batch).logits
    with torch.no_grad():
        expected = load_classifier(tiny)(**batch).logits
    assert torch.allclose(torch.as_tensor(logits), expected, atol=1e-4)

    optimum = export(tiny, sst2_files[1], tmp_path / "optimum")
    assert optimum["exporter"].startswith("optimum.")
    assert optimum["inputs"] == manifest["inputs"] and optimum["opset"] == manifest["opset"]

    def ops(folder: Path) -> collections.Counter:
        return collections.Counter(n.op_type for n in onnx.load(str(folder)).graph.node)

    assert ops(out / "model.onnx") == ops(tmp_path / "optimum" / "model.onnx")
