"""The CPU's flags decide the int8 weight range: 7-bit where ONNX Runtime's u8 x s8 product
saturates with 8-bit weights (x86 with AVX2, no VNNI), and every int8 config follows it."""

from __future__ import annotations

import pytest

from slimbert import cpu
from slimbert.compress.fake_quant import Int8Target
from slimbert.compress.qat import QATConfig
from slimbert.export.quantize import DynamicQuantConfig, StaticQuantConfig

EPYC_AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
XEON_AMX = EPYC_AVX2 | {"avx512f", "avx512_vnni", "amx_int8", "amx_bf16"}


@pytest.mark.parametrize(
    ("machine", "flags", "saturates"),
    [
        ("x86_64", EPYC_AVX2, True),
        ("x86_64", EPYC_AVX2 | {"avx512f", "avx512bw"}, True),  # AVX-512 without VNNI
        ("x86_64", EPYC_AVX2 | {"avx_vnni"}, False),
        ("x86_64", XEON_AMX, False),
        ("x86_64", frozenset({"sse4_2"}), False),  # no AVX2: ONNX Runtime's SSE kernel widens
        ("aarch64", frozenset({"asimd", "asimddp"}), False),
        ("x86_64", frozenset(), False),  # flags unreadable
    ],
)
def test_int8_weights_saturate_where_vpmaddubsw_runs_the_product(
    monkeypatch, machine, flags, saturates
):
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: flags)
    assert cpu.int8_weights_saturate() is saturates
    # the default of every int8 setting follows, so the gate measures what this CPU serves
    assert DynamicQuantConfig().reduce_range is saturates
    assert StaticQuantConfig().reduce_range is saturates
    assert Int8Target().reduce_range is saturates
    assert QATConfig().target().reduce_range is saturates
    # an explicit choice is kept
    assert DynamicQuantConfig(reduce_range=not saturates).reduce_range is not saturates
