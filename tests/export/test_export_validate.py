"""Parity gates without an export: presets, overrides, the failures they report with numbers,
and which step's artifact each set of export options keeps and holds to which gates."""

from __future__ import annotations

import math

import pytest

from slimbert.errors import SlimbertError
from slimbert.export.onnx import ExportOptions
from slimbert.export.optimize import OptimizeConfig
from slimbert.export.quantize import DynamicQuantConfig
from slimbert.export.validate import Parity, Tolerances


def parity(**changes) -> Parity:
    values = dict(
        examples=24,
        max_abs_diff=2e-5,
        mean_abs_diff=1e-6,
        label_agreement=100.0,
        metric_name="f1",
        torch_metric=80.0,
        onnx_metric=80.0,
        delta_metric=0.0,
        provider="cpu",
    )
    return Parity(**(values | changes))


def test_presets_and_overrides():
    assert Tolerances.preset("fp32") == Tolerances(1e-4, 100.0, 0.0)
    assert Tolerances.preset("fused") == Tolerances(1e-3, 99.5, 0.1)
    assert Tolerances.preset("fp16") == Tolerances(5e-2, 99.0, 0.5)
    assert Tolerances.preset("int8") == Tolerances(None, 97.0, 1.0)
    assert Tolerances.preset("int8").override(max_f1_drop=0.5) == Tolerances(None, 97.0, 0.5)
    with pytest.raises(SlimbertError, match="no tolerance preset for 'int4'"):
        Tolerances.preset("int4")


def test_a_matching_artifact_passes_every_preset():
    for precision in ("fp32", "fused", "fp16", "int8"):
        assert parity().failures(Tolerances.preset(precision)) == []


def test_failures_name_each_gate_with_its_numbers():
    drifted = parity(max_abs_diff=3e-3, label_agreement=95.833, onnx_metric=78.0, delta_metric=-2.0)
    assert drifted.failures(Tolerances.preset("fused")) == [
        "max |Δlogit| 0.003 > 0.001",
        "label agreement 95.83% < 99.50%",
        "f1 drop 2.00 points > 0.10",
    ]
    # int8 gates no logit difference, only labels and the metric
    assert drifted.failures(Tolerances.preset("int8")) == [
        "label agreement 95.83% < 97.00%",
        "f1 drop 2.00 points > 1.00",
    ]


def test_nan_always_fails():
    broken = parity(
        max_abs_diff=math.inf,
        mean_abs_diff=math.inf,
        onnx_metric=math.nan,
        delta_metric=-math.inf,
    )
    failures = broken.failures(Tolerances(None, 0.0, 100.0))
    assert failures[0] == "the ONNX model produced NaN or Inf"


@pytest.mark.parametrize(
    ("options", "last_step", "preset"),
    [
        (ExportOptions(), "export", Tolerances.preset("fp32")),
        (ExportOptions(optimize=OptimizeConfig.cpu()), "optimize", Tolerances.preset("fused")),
        (
            ExportOptions(optimize=OptimizeConfig.cpu(), quantize=DynamicQuantConfig()),
            "quantize",
            Tolerances.preset("int8"),
        ),
        (ExportOptions(precision="fp16"), "fp16", Tolerances.preset("fp16")),
    ],
)
def test_the_kept_artifact_and_its_gates(options, last_step, preset):
    assert options.last_step == last_step
    assert options.final_tolerances() == preset
