"""What this machine's CPU computes natively, read once from /proc/cpuinfo, for the defaults
that depend on it: the range of int8 weights (export, compress qat) and, in training/precision.py,
whether bf16 autocast is fast."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# the instructions that multiply u8 by s8 and add into 32 bits in one step
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux: x86 `flags`, ARM `Features`); empty where they cannot
    be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def int8_weights_saturate() -> bool:
    """Whether ONNX Runtime's u8 × s8 int8 matrix product can saturate on this CPU with 8-bit
    weights: an x86 CPU with AVX2 but no VNNI runs it on VPMADDUBSW, which adds each pair of
    products into 16 bits (2 × 255 × 127 overflows them); 7-bit weights (quantize_dynamic's
    reduce_range) keep every pair in range. Measured on an AMD EPYC with AVX2 only: a tiny BERT's
    8-bit int8 graph was 1.1e-3 from exact int8 arithmetic, its 7-bit graph equal to it."""
    flags = cpu_flags()
    if platform.machine().lower() not in ("x86_64", "amd64") or "avx2" not in flags:
        return False
    return not flags & VNNI_FLAGS
