"""The export pipeline on a tiny 3-layer BERT (hidden 32, 4 heads): fusion counts, int8 and fp16
artifacts, and validation gates that refuse damaged graphs (the Triton repository:
test_triton.py)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import build_bert

from slimbert.cli import cli
from slimbert.errors import SlimbertError
from slimbert.export import quantize as quantizing
from slimbert.export.onnx import ExportOptions, export
from slimbert.export.optimize import OptimizeConfig, fusion_counts, optimize
from slimbert.export.quantize import (
    DynamicQuantConfig,
    StaticQuantConfig,
    annotate_types,
    convert_fp16,
    quantize_dynamic_model,
)
from slimbert.export.runtime import OnnxClassifier
from slimbert.export.triton import TritonConfig

LAYERS = 3
FEATURES = {
    "input_ids": np.array([[2, 5, 9, 3, 0], [2, 7, 8, 11, 3]], dtype=np.int64),
    "attention_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=np.int64),
    "token_type_ids": np.zeros((2, 5), dtype=np.int64),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_bert(tmp_path_factory.mktemp("tiny3"), layers=LAYERS, hidden=32, heads=4)


@pytest.fixture(scope="module")
def hf_config(tiny):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(tiny))


@pytest.fixture(scope="module")
def plain(tmp_path_factory, tiny, sst2_files) -> Path:
    """The plain fp32 export's model.onnx (eager attention)."""
    out = tmp_path_factory.mktemp("plain") / "out"
    export(tiny, sst2_files[1], out)
    return out / "model.onnx"


@pytest.fixture(scope="module")
def fused(tmp_path_factory, tiny, sst2_files) -> tuple[Path, dict]:
    """--optimize for the CPU, with a Triton repository beside it."""
    root = tmp_path_factory.mktemp("fused")
    options = ExportOptions(
        optimize=OptimizeConfig.cpu(), triton=TritonConfig(root / "triton", smoke_examples=6)
    )
    return root / "out", export(tiny, sst2_files[1], root / "out", options=options)


def _staging_left(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".staging" in p.name]


def test_cpu_fusion_counts_and_every_step_validated(fused):
    out, manifest = fused
    step = manifest["optimizations"][0]
    assert {op: n for op, n in step["fusions"]["counts"].items() if n} == {
        "Attention": LAYERS,
        "EmbedLayerNormalization": 1,
        "BiasGelu": LAYERS,
    }
    assert step["fusions"]["warnings"] == []
    assert fusion_counts(out / "model.onnx")["Attention"] == LAYERS
    assert manifest["runtime"] == {"cpu": {"disabled_optimizers": ["SkipLayerNormFusion"]}}
    assert [s["step"] for s in manifest["stages"]] == ["export", "optimize"]
    assert all(
        s["label_agreement"] == 100.0 and s["max_abs_diff"] < 1e-5 for s in manifest["stages"]
    )
    assert manifest["precision"] == "fp32" and manifest["exporter"].endswith("(eager attention)")
    assert manifest["validation"]["tolerances"] == {
        "max_abs_diff": 1e-3,
        "min_agreement": 99.5,
        "max_f1_drop": 0.1,
    }
    assert manifest["validation"]["provider"] == "cpu" and manifest["validation"]["examples"] == 24
    assert manifest["contrib_ops"] == ["Attention", "BiasGelu", "EmbedLayerNormalization"]
    assert manifest["files"]["model.onnx"]["bytes"] == (out / "model.onnx").stat().st_size
    # the session slimbert builds from the folder follows the manifest's hint
    assert OnnxClassifier(out / "model.onnx", "cpu", threads=1).disabled_optimizers == [
        "SkipLayerNormFusion"
    ]


def test_cuda_preset_adds_skip_layer_norm_and_sdpa_exports_fuse_too(
    tiny, hf_config, sst2_files, plain, tmp_path
):
    """On transformers 4 the SDPA export scales Q and K by √scale (3 Sqrt a layer; the eager one
    has none), and onnxruntime ≥ 1.20 fuses it all the same. Transformers 5 hands SDPA a boolean
    mask, whose export guards the Softmax with IsNaN → Where: that attention does not fuse and
    the report says so (the default eager export fuses on both lines). The CUDA preset's graph is
    checked on the CPU."""
    manifest = export(
        tiny, sst2_files[1], tmp_path / "sdpa", options=ExportOptions(attention="sdpa")
    )
    sdpa = tmp_path / "sdpa" / "model.onnx"
    ops = collections.Counter(n.op_type for n in onnx.load(str(sdpa)).graph.node)
    transformers_5 = int(hf_config.transformers_version.split(".")[0]) >= 5
    assert (ops["Sqrt"], ops["IsNaN"]) == ((0, LAYERS) if transformers_5 else (3 * LAYERS, 0))
    assert collections.Counter(n.op_type for n in onnx.load(str(plain)).graph.node)["Sqrt"] == 0
    assert manifest["exporter"].endswith("(sdpa attention)")
    report = optimize(sdpa, tmp_path / "cuda.onnx", hf_config, OptimizeConfig.cuda())
    fused = {
        "Attention": LAYERS,
        "SkipLayerNormalization": 2 * LAYERS,
        "EmbedLayerNormalization": 1,
        "BiasGelu": LAYERS,
    }
    if transformers_5:
        fused = {"SkipLayerNormalization": 2 * LAYERS, "BiasGelu": LAYERS}
        assert report.warnings[0].startswith(f"attention fused in 0 of {LAYERS} layers")
    assert {op: n for op, n in report.counts.items() if n} == fused
    before = OnnxClassifier(sdpa, "cpu", threads=1)(FEATURES)
    np.testing.assert_allclose(
        OnnxClassifier(tmp_path / "cuda.onnx", "cpu", threads=1)(FEATURES), before, atol=1e-5
    )


def test_attention_that_does_not_fuse_is_reported(plain, hf_config, tmp_path, caplog):
    """A Relu after each Softmax (a no-op on probabilities) breaks ONNX Runtime's attention
    pattern."""
    model = onnx.load(str(plain))
    for node in [n for n in model.graph.node if n.op_type == "Softmax"]:
        probabilities = node.output[0]
        node.output[0] = probabilities + "_before_relu"
        model.graph.node.append(
            onnx.helper.make_node(
                "Relu", [node.output[0]], [probabilities], name=node.name + "_relu"
            )
        )
    onnx.save(model, str(tmp_path / "relu.onnx"))
    with caplog.at_level("WARNING", logger="slimbert.export.optimize"):
        report = optimize(
            tmp_path / "relu.onnx", tmp_path / "fused.onnx", hf_config, OptimizeConfig.cpu()
        )
    assert report.attention == 0 and report.counts["BiasGelu"] == LAYERS
    assert report.warnings[0].startswith(f"attention fused in 0 of {LAYERS} layers")
    assert "attention fused in 0" in caplog.text
    np.testing.assert_allclose(
        OnnxClassifier(tmp_path / "fused.onnx", "cpu", threads=1)(FEATURES),
        OnnxClassifier(plain, "cpu", threads=1)(FEATURES),
        atol=1e-5,
    )


def test_fused_graph_needs_contrib_op_types_to_quantize(plain, hf_config, tmp_path):
    """What breaks optimum's O2 → avx512_vnni path: onnx shape inference gives no type past a
    com.microsoft Attention, so ONNX Runtime's quantizer stops; symbolic inference fixes it."""
    from onnxruntime.quantization import quantize_dynamic

    fused = tmp_path / "fused.onnx"
    optimize(plain, fused, hf_config, OptimizeConfig.cpu())
    with pytest.raises(
        RuntimeError, match="Unable to find data type for weight_name=.*MatMul_output_0"
    ):
        quantize_dynamic(str(fused), str(tmp_path / "raw-int8.onnx"))
    assert len(annotate_types(onnx.load(str(fused))).graph.value_info) > 0
    report = quantize_dynamic_model(fused, tmp_path / "int8.onnx", DynamicQuantConfig())
    assert report.quantized_ops["QAttention"] == LAYERS
    assert (
        report.quantized_ops["MatMulInteger"] == 3 * LAYERS + 2
    )  # attention output, FFN in/out; pooler and classifier Gemms
    np.testing.assert_allclose(
        OnnxClassifier(tmp_path / "int8.onnx", "cpu", threads=1)(FEATURES),
        OnnxClassifier(plain, "cpu", threads=1)(FEATURES),
        atol=5e-3,
    )


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_quantized_artifacts_validate(tiny, sst2_files, tmp_path, method):
    train, dev = sst2_files
    dynamic = export(
        tiny,
        dev,
        tmp_path / "dynamic",
        options=ExportOptions(
            optimize=OptimizeConfig.cpu(),
            quantize=DynamicQuantConfig(per_channel=method == "entropy"),
        ),
    )
    static = export(
        tiny,
        dev,
        tmp_path / "static",
        options=ExportOptions(
            optimize=OptimizeConfig.cpu(),
            quantize=StaticQuantConfig(
                method=method, calibration_file=train, examples=32, batch_size=8
            ),
        ),
    )
    for manifest in (dynamic, static):
        assert manifest["precision"] == "int8"
        assert [s["step"] for s in manifest["stages"]] == ["export", "optimize", "quantize"]
        final = manifest["validation"]
        assert final["tolerances"] == {
            "max_abs_diff": None,
            "min_agreement": 97.0,
            "max_f1_drop": 1.0,
        }
        assert final["label_agreement"] >= 97.0 and np.isfinite(final["max_abs_diff"])
        assert manifest["stages"][-1]["onnx_bytes"] < manifest["stages"][0]["onnx_bytes"]
    assert dynamic["optimizations"][1]["quantized_ops"]["QAttention"] == LAYERS
    fusion, step = static["optimizations"]
    assert (
        fusion["config"]["attention"] is False
    )  # QDQ has no Attention: Q/K/V stay MatMuls to quantize
    assert step["calibration_examples"] == 32 and step["config"]["method"] == method
    graph = onnx.load(str(tmp_path / "static" / "model.onnx")).graph
    weights = {init.name for init in graph.initializer}
    producers = {out: node.op_type for node in graph.node for out in node.output}
    dequantized_weights = [
        n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights
    ]
    assert len(dequantized_weights) == 6 * LAYERS  # Q, K, V, attention output, FFN in, FFN out
    assert not [
        n
        for n in graph.node
        if n.op_type == "QuantizeLinear" and producers.get(n.input[0]) == "MatMul"
    ]  # outputs stay float


def test_gate_fails_on_a_damaged_model_and_writes_nothing(tiny, sst2_files, tmp_path, monkeypatch):
    """A quantizer whose graph negates the logits (every label flips) and one that adds NaN."""
    real = quantizing.quantize_dynamic_model

    def damaging(op_type: str, value: float):
        def run(onnx_in, onnx_out, config):
            report = real(onnx_in, onnx_out, config)
            model = onnx.load(str(onnx_out))
            producer = next(n for n in model.graph.node if "logits" in n.output)
            producer.output[list(producer.output).index("logits")] = "logits_before_damage"
            model.graph.initializer.append(
                onnx.numpy_helper.from_array(np.array(value, dtype=np.float32), "damage")
            )
            model.graph.node.append(
                onnx.helper.make_node(op_type, ["logits_before_damage", "damage"], ["logits"])
            )
            onnx.save(model, str(onnx_out))
            return report

        return run

    options = ExportOptions(quantize=DynamicQuantConfig())
    monkeypatch.setattr(quantizing, "quantize_dynamic_model", damaging("Mul", -1.0))
    with pytest.raises(
        SlimbertError,
        match=r"the quantize step's ONNX model fails validation "
        r".*label agreement 0\.00% < 97\.00%.*nothing written",
    ):
        export(tiny, sst2_files[1], tmp_path / "flipped", options=options)
    monkeypatch.setattr(quantizing, "quantize_dynamic_model", damaging("Add", np.nan))
    with pytest.raises(SlimbertError, match="NaN or Inf"):
        export(tiny, sst2_files[1], tmp_path / "nan", options=options)
    assert not (tmp_path / "flipped").exists() and not (tmp_path / "nan").exists()
    assert _staging_left(tmp_path) == []


def test_refusals_name_the_flag_and_the_fix(tiny, sst2_files, tmp_path):
    dev = sst2_files[1]
    with pytest.raises(SlimbertError, match="--precision fp16 needs --provider cuda"):
        export(tiny, dev, tmp_path / "a", options=ExportOptions(precision="fp16"))
    with pytest.raises(SlimbertError, match="--quantize dynamic runs on --provider cpu only"):
        export(
            tiny,
            dev,
            tmp_path / "b",
            provider="cuda",
            options=ExportOptions(quantize=DynamicQuantConfig()),
        )
    with pytest.raises(SlimbertError, match="--quantize static needs --calibration-data"):
        export(tiny, dev, tmp_path / "c", options=ExportOptions(quantize=StaticQuantConfig()))
    with pytest.raises(SlimbertError, match="--calibration-method 'kl'"):
        StaticQuantConfig(method="kl")
    assert list(tmp_path.iterdir()) == []


def test_fp16_keeps_layer_norm_and_softmax_in_fp32(plain, tmp_path):
    """Checked on the CPU, where ONNX Runtime runs fp16 graphs through inserted Casts."""
    summary = convert_fp16(plain, tmp_path / "fp16.onnx")
    assert summary["fp32_ops"] == {"LayerNormalization": 1 + 2 * LAYERS, "Softmax": LAYERS}
    assert summary["fp32_initializers"] == 0 and summary["fp16_initializers"] > 0
    graph = onnx.load(str(tmp_path / "fp16.onnx")).graph
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    softmax_inputs = {n.input[0] for n in graph.node if n.op_type == "Softmax"}
    assert all(name.endswith("_cast_to_fp32") for name in softmax_inputs)
    half = OnnxClassifier(tmp_path / "fp16.onnx", "cpu", threads=1)(FEATURES)
    np.testing.assert_allclose(half, OnnxClassifier(plain, "cpu", threads=1)(FEATURES), atol=5e-3)


@pytest.mark.gpu
def test_fp16_export_on_cuda(tiny, sst2_files, tmp_path):
    manifest = export(
        tiny,
        sst2_files[1],
        tmp_path / "fp16",
        provider="cuda",
        options=ExportOptions(optimize=OptimizeConfig.cuda(), precision="fp16"),
    )
    assert manifest["precision"] == "fp16" and manifest["validation"]["provider"] == "cuda"


def test_cli_export_optimize_quantize_reports_fusions(tiny, sst2_files, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "export",
            "--model",
            str(tiny),
            "--eval",
            str(sst2_files[1]),
            "--out",
            str(tmp_path / "cli"),
            "--optimize",
            "--quantize",
            "dynamic",
            "--max-f1-drop",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        f"fused: Attention {LAYERS}, EmbedLayerNormalization 1, BiasGelu {LAYERS}" in result.output
    )
    assert "exported int8" in result.output
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert manifest["validation"]["tolerances"]["max_f1_drop"] == 0.5
    result = CliRunner().invoke(
        cli,
        [
            "export",
            "--model",
            str(tiny),
            "--eval",
            str(sst2_files[1]),
            "--out",
            str(tmp_path / "half"),
            "--precision",
            "fp16",
        ],
    )
    assert result.exit_code != 0 and "--precision fp16 needs --provider cuda" in result.output
