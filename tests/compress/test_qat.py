"""Distillation-aware int8 (compress/fake_quant.py, compress/qat.py): the simulated int8 forward
against a hand computation and against ONNX Runtime's int8 graph; `compress qat` lowering the
int8 model's distance to the fp32 model on a student built so that int8 hurts; the refusals."""

from __future__ import annotations

import collections
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import build_bert, sentiment_rows, write_sst2

from slimbert.batches import EncodedDataset
from slimbert.cli import cli
from slimbert.compress.fake_quant import (
    Int8Linear,
    Int8Target,
    attach,
    detach,
    quantize_activation,
    quantize_weight,
)
from slimbert.cpu import int8_weights_saturate
from slimbert.data import Columns, read_examples
from slimbert.export.onnx import ExportOptions, export
from slimbert.export.optimize import OptimizeConfig
from slimbert.export.quantize import DynamicQuantConfig
from slimbert.export.runtime import OnnxClassifier
from slimbert.export.validate import Tolerances, onnx_logits, torch_logits
from slimbert.models import load_classifier, load_model_dir

NO_GATE = Tolerances(None, 0.0, 100.0)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_activation_rounding_by_hand():
    # range [−1, 2]: scale 3/255, zero point 85; 0.5/scale = 42.5 rounds to even, 42
    x = torch.tensor([[-1.0, 0.5, 2.0]])
    assert quantize_activation(x).tolist()[0] == pytest.approx([-1.0, 42 * 3 / 255, 2.0], abs=1e-7)
    # a range that does not hold 0 is widened to it: [0, 4], scale 4/255
    y = torch.tensor([1.0, 4.0])
    assert quantize_activation(y).tolist() == pytest.approx([64 * 4 / 255, 4.0], abs=1e-7)


def test_weight_rounding_by_hand():
    weight = torch.tensor([[0.9, -0.127, 0.3], [0.01, 0.02, -0.04]])
    # per row: scales 0.9/127 and 0.04/127; −0.127/(0.9/127) = −17.92 → −18, 0.3 → 42.33 → 42
    row0 = [0.9, -18 * 0.9 / 127, 42 * 0.9 / 127]
    row1 = [32 * 0.04 / 127, 64 * 0.04 / 127, -0.04]  # 31.75 → 32, 63.5 → 64 (even)
    assert quantize_weight(weight, 127, True).tolist() == [
        pytest.approx(row0, abs=1e-7),
        pytest.approx(row1, abs=1e-7),
    ]
    # one scale for the whole weight (0.9/127): the small row rounds to 1, 3 and −6 steps
    whole = quantize_weight(weight, 127, False)[1].tolist()
    assert whole == pytest.approx([1 * 0.9 / 127, 3 * 0.9 / 127, -6 * 0.9 / 127], abs=1e-7)
    # 7 bits: 0.3 / (0.9/64) = 21.33 → 21
    assert quantize_weight(weight, 64, True)[0, 2].item() == pytest.approx(21 * 0.9 / 64, abs=1e-7)


def test_gradients_pass_straight_through():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 2)
    attach_to = torch.nn.Sequential(linear)
    attach(attach_to, Int8Target(reduce_range=False))  # 8-bit weights on every CPU
    x = torch.randn(4, 3, requires_grad=True)
    attach_to(x).sum().backward()
    assert linear.weight.grad is not None and x.grad is not None
    # the rounding passes gradients as if it were the identity: d/dW Σ x̂ Ŵᵀ = Σ_rows x̂ and
    # d/dx = Σ_outputs Ŵ
    # (the backward's matmul and these sums add in another order: float32 rounding allowed)
    rounded_x = quantize_activation(x.detach())
    torch.testing.assert_close(
        linear.weight.grad, rounded_x.sum(0).expand(2, 3), rtol=1e-5, atol=1e-6
    )
    rounded_w = quantize_weight(linear.weight.detach(), 127, True)
    torch.testing.assert_close(x.grad, rounded_w.sum(0).expand(4, 3), rtol=1e-5, atol=1e-6)


def test_attach_and_detach_keep_the_parameters(tiny_teacher):
    model = load_classifier(tiny_teacher)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model.classifier.weight
    linears = attach(model, Int8Target())
    assert len(linears) == 4 * 6 + 2  # Q, K, V, attention out, FFN in and out; pooler, head
    assert isinstance(model.classifier, Int8Linear) and model.classifier.weight is weight
    assert list(model.state_dict()) == list(before)  # same names: checkpoints load either way
    assert detach(model) == len(linears)
    assert type(model.classifier) is torch.nn.Linear and model.classifier.weight is weight
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """A 2-layer tiny BERT, its dev set, and its dynamic int8 exports: plain, and fused
    (--optimize); per-channel, and per-tensor 7-bit."""
    root = tmp_path_factory.mktemp("int8-graphs")
    model_dir = build_bert(root / "model", layers=2)
    dev = write_sst2(root / "dev.tsv", sentiment_rows(48, 2))
    out = {}
    for name, fused, config in (
        ("plain", False, DynamicQuantConfig()),
        ("fused", True, DynamicQuantConfig()),
        ("plain-per-tensor-7bit", False, DynamicQuantConfig(per_channel=False, reduce_range=True)),
    ):
        options = ExportOptions(
            optimize=OptimizeConfig.for_provider("cpu") if fused else None, quantize=config
        )
        export(model_dir, dev, root / name, tolerances=NO_GATE, options=options)
        out[name] = root / name
    return model_dir, dev, out


def dev_set(model_dir, dev, max_length=64):
    model, tokenizer, _ = load_model_dir(model_dir)
    examples = read_examples(dev, Columns(), task="classification")
    return model, EncodedDataset(tokenizer, examples, max_length, [0] * len(examples))


@pytest.mark.parametrize(
    ("name", "target", "ops"),
    [
        # every Linear is int8; Q·Kᵀ and softmax·V (2 a layer) stay float MatMuls
        ("plain", Int8Target(), {"MatMulInteger": 14, "DynamicQuantizeLinear": 10, "MatMul": 4}),
        ("fused", Int8Target(), {"MatMulInteger": 8, "QAttention": 2, "MatMul": 0}),
        ("plain-per-tensor-7bit", Int8Target(False, True), {"MatMulInteger": 14, "MatMul": 4}),
    ],
)
def test_simulated_int8_computes_the_int8_graph(graphs, name, target, ops):
    """The fp32 model's logits are 1e-4 away from the int8 graph's; the simulated model's equal
    them to float rounding, fused attention or not, so what training sees is what ships."""
    model_dir, dev, exported = graphs
    graph_ops = onnx.load(exported[name] / "model.onnx").graph.node
    found = collections.Counter(node.op_type for node in graph_ops)
    assert {op: found[op] for op in ops} == ops
    model, dataset = dev_set(model_dir, dev)
    graph = onnx_logits(OnnxClassifier(exported[name] / "model.onnx", "cpu"), dataset)  # (N, 2)
    fp32 = torch_logits(model, dataset)
    attach(model, target)
    simulated = torch_logits(model, dataset)
    assert np.abs(fp32 - graph).max() > 5e-5
    assert np.abs(simulated - graph).max() < 1e-7


@pytest.fixture(scope="module")
def outlier_case(tmp_path_factory):
    """A teacher with logits of a few units, and a student equal to it in fp32 whose last layer
    sends one hidden unit ×200 into the pooler (its pooler column ÷200): the outlier sets the
    pooler input's int8 range, and the other 31 units keep a few levels each."""
    root = tmp_path_factory.mktemp("outlier")
    train = write_sst2(root / "train.tsv", sentiment_rows(64, 1))
    dev = write_sst2(root / "dev.tsv", sentiment_rows(48, 2))
    teacher = build_bert(root / "teacher", layers=2)
    model = load_classifier(teacher)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            for linear in (
                layer.attention.self.query,
                layer.attention.self.key,
                layer.attention.self.value,
            ):
                linear.weight.mul_(8.0)
        model.classifier.weight.mul_(300.0)
    model.save_pretrained(str(teacher), safe_serialization=True)
    student = root / "student"
    shutil.copytree(teacher, student)
    with torch.no_grad():
        norm = model.bert.encoder.layer[-1].output.LayerNorm
        norm.weight[0] *= 200.0
        norm.bias[0] *= 200.0
        model.bert.pooler.dense.weight[:, 0] /= 200.0
    model.save_pretrained(str(student), safe_serialization=True)
    return {"root": root, "train": train, "dev": dev, "teacher": teacher, "student": student}


def int8_distance(case, model_dir, out) -> float:
    """Mean |int8 graph logit − teacher logit| on the dev rows, the graph made by export."""
    result = invoke(
        "export", "--model", model_dir, "--eval", case["dev"], "--out", out,
        "--quantize", "dynamic", "--min-agreement", 0, "--max-f1-drop", 100,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    teacher, dataset = dev_set(case["teacher"], case["dev"], 32)
    graph = onnx_logits(OnnxClassifier(out / "model.onnx", "cpu"), dataset)
    return float(np.abs(graph - torch_logits(teacher, dataset)).mean())


def test_qat_lowers_the_int8_models_distance_to_fp32(outlier_case):
    case = outlier_case
    root = case["root"]
    teacher, dataset = dev_set(case["teacher"], case["dev"], 32)
    student, _ = dev_set(case["student"], case["dev"], 32)
    fp32 = np.abs(torch_logits(student, dataset) - torch_logits(teacher, dataset)).max()
    assert fp32 < 1e-4  # the same function in fp32
    result = invoke(
        "compress", "qat", "--teacher", case["teacher"], "--student", case["student"],
        "--train", case["train"], "--eval", case["dev"], "--out", root / "qat",
        "--max-length", 32, "--batch-size", 8, "--max-steps", 80, "--eval-every", 80,
        "--seed", 0, "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((root / "qat" / "slimbert.json").read_text())
    assert meta["schema_version"] == 1  # written through the record
    assert meta["method"] == "qat" and meta["parent"]["path"] == str(case["student"])
    assert meta["int8"]["linears"] == 14 and meta["train_config"]["lr"] == 1e-5
    assert meta["train_config"]["mixed_precision"] == "no"
    # trained for the int8 graph this CPU's export writes: 7-bit weights where 8-bit saturate
    reduce_range = meta["method_config"]["reduce_range"]
    assert reduce_range == int8_weights_saturate()
    # the soft term alone (alpha 1); pinned with seed 0 on this case, for each weight range
    first = meta["first_losses"]
    assert [r["loss"] for r in first[:3]] == pytest.approx([r["soft"] for r in first[:3]])
    assert [round(r["loss"], 4) for r in first[:3]] == pytest.approx(PINNED[reduce_range], abs=2e-4)
    dynamic = int8_distance(case, case["student"], root / "dynamic-int8")
    tuned = int8_distance(case, root / "qat", root / "qat-int8")
    assert tuned < 0.95 * dynamic, (tuned, dynamic)
    # export's gate holds the tuned student's int8 graph to what it was trained to compute,
    # its simulated-int8 forward (which the graph reproduces batch for batch), and an
    # ordinary student's to its fp32 forward
    tuned_gate = json.loads((root / "qat-int8" / "manifest.json").read_text())["validation"]
    plain_gate = json.loads((root / "dynamic-int8" / "manifest.json").read_text())["validation"]
    assert tuned_gate["reference"] == "pytorch, simulated int8 (compress qat)"
    assert plain_gate["reference"] == "pytorch"
    assert tuned_gate["max_abs_diff"] < 1e-3 and tuned_gate["label_agreement"] == 100.0


# first losses with 8-bit weights (measured on a Xeon with AMX) and 7-bit (an AVX2-only EPYC)
PINNED = {False: [0.0029, 0.0017, 0.0022], True: [0.0009, 0.0004, 0.0020]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "compress qat needs --student DIR: the trained fp32 student to tune"),
        (("--student", "nowhere"), "--student nowhere: no such directory"),
    ],
)
def test_refusals_are_one_line(outlier_case, tmp_path, extra, message):
    case = outlier_case
    result = invoke(
        "compress", "qat", "--teacher", case["teacher"], "--train", case["train"],
        "--eval", case["dev"], "--out", tmp_path / "q", *extra,
    )  # fmt: skip
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == f"Error: {message}"
    assert not (tmp_path / "q").exists()


def test_a_student_of_other_labels_is_refused(outlier_case, tmp_path):
    case = outlier_case
    other = build_bert(tmp_path / "three", layers=1, num_labels=3)
    result = invoke(
        "compress", "qat", "--teacher", case["teacher"], "--student", other,
        "--train", case["train"], "--eval", case["dev"], "--out", tmp_path / "q",
    )  # fmt: skip
    assert result.exit_code != 0
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: --student {other} predicts labels") and "tune a student" in last
