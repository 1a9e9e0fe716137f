"""The precision a training step runs at: what --mixed-precision auto means on this device, and
the autocast context the loop wraps each step in."""

from __future__ import annotations

import contextlib
import warnings

import torch

from slimbert.cpu import cpu_flags
from slimbert.errors import SlimbertError

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}
# measured: a 6 x 384 BERT training step (batch 32, 40 tokens, one thread) on an AMD EPYC with
# AVX2 only took 24.3 s under bf16 autocast and 1.7 s in fp32
BF16_EMULATED = (
    "--mixed-precision bf16: this CPU has neither AVX-512 BF16 nor AMX, so bf16 is emulated and "
    "a training step runs about 14x slower than in fp32; --mixed-precision auto picks fp32 here"
)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX): where bf16 autocast
    trains faster instead of slower. False where its flags cannot be read."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(requested: str, device: torch.device) -> str:
    """ "auto" as the precision it means on `device`: bf16 on a GPU that supports it and on a
    CPU with AVX-512 BF16 or AMX, fp32 ("no") elsewhere; any other value as given (bf16 asked
    of a CPU that only emulates it with a warning)."""
    if requested == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        warnings.warn(BF16_EMULATED, stacklevel=2)
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "no"


def autocast_for(mixed_precision: str, device: torch.device):
    """The autocast context of one training step: bf16 or fp16 on `device`, or nothing.

    The loop applies it around the step alone, so evaluation (and the best checkpoint it picks)
    always runs the fp32 weights as they will be saved and served; Accelerate is given no
    precision, which also lets one process train under several settings (slimbert experiment).
    """
    if mixed_precision == "no":
        return contextlib.nullcontext
    if mixed_precision == "fp16" and device.type == "cpu":
        raise SlimbertError(
            "--mixed-precision fp16 needs a GPU; on a CPU use bf16 (fast with AVX-512 BF16 or AMX)"
        )
    dtype = PRECISIONS[mixed_precision]
    return lambda: torch.autocast(device.type, dtype=dtype)
