"""Simulated int8: a student's Linears compute, in float, what ONNX Runtime's dynamic int8 kernels
will compute from the same weights, so that training can make the weights robust to it.

`slimbert export --quantize dynamic` turns every Linear of a transformer classifier into
DynamicQuantizeLinear → MatMulInteger (with --optimize, the Q/K/V projections into one
QAttention, which rounds the same way). `attach` replaces each nn.Linear by an `Int8Linear`
sharing its parameters:

    x (B, L, K) ─▶ uint8, one range per call: [min(x, 0), max(x, 0)] / 255 ─┐  DynamicQuantizeLinear
    W (N, K)    ─▶ int8 symmetric, one scale per output row: max|W_n| / 127 ├─▶ x̂ Ŵᵀ + b
                   (/ 64 with --reduce-range; one scale for all with        ┘  MatMulInteger
                    --per-tensor)

On a tiny BERT the simulated logits equal ONNX Runtime's int8 graph's to 2e-9, fused or not
(tests/test_qat.py), where the fp32 model's are 3e-4 away.

Both roundings are torch's fake-quantize kernels (`torch.fake_quantize_per_tensor_affine`,
`..._per_channel_affine`, what `torch.ao.quantization.FakeQuantize` runs), with the scales and
zero points computed as ONNX Runtime's quantizer computes them (`compute_scale_zp`); gradients
pass straight through the rounding. The scales come from the values of each call, as the
dynamic kernels' do, so nothing is calibrated and nothing but the weights is learned. `detach`
puts plain nn.Linears back around the same parameters: the saved model is an ordinary fp32
model whose weights were trained to be rounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from slimbert.cpu import int8_weights_saturate

# int8 weights, symmetric: ONNX Runtime's ranges for QInt8 (quant_utils: symmetric, reduced)
FULL_RANGE = 127
REDUCED_RANGE = 64
# uint8 activations of DynamicQuantizeLinear
ACTIVATION_MAX = 255


@dataclass(frozen=True)
class Int8Target:
    """The int8 graph the weights are trained for; each field is the export flag of that name.

    per_channel:  one weight scale per output row (export --per-channel, the default)
    reduce_range: 7-bit weights (export --reduce-range; by default, as export's, on a CPU
                  without VNNI)
    """

    per_channel: bool = True
    reduce_range: bool = field(default_factory=int8_weights_saturate)


def quantize_activation(x: torch.Tensor) -> torch.Tensor:
    """x rounded to uint8 over its own range, as DynamicQuantizeLinear does; same shape."""
    with torch.no_grad():
        low = torch.clamp(x.min(), max=0.0).float()
        high = torch.clamp(x.max(), min=0.0).float()
        scale = (high - low) / ACTIVATION_MAX
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero_point = torch.clamp(torch.round(-low / scale), 0, ACTIVATION_MAX).to(torch.int32)
    return torch.fake_quantize_per_tensor_affine(
        x, scale.reshape(1), zero_point.reshape(1), 0, ACTIVATION_MAX
    )


def weight_scales(weight: torch.Tensor, qmax: int, per_channel: bool) -> torch.Tensor:
    """Symmetric scales of a (N, K) weight: (N,) per output row, or (1,) for the whole weight."""
    with torch.no_grad():
        absmax = weight.abs().amax(dim=1) if per_channel else weight.abs().amax().reshape(1)
        scale = absmax.float() / qmax
        return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize_weight(weight: torch.Tensor, qmax: int, per_channel: bool) -> torch.Tensor:
    """A (N, K) weight rounded to int8 in [−qmax, qmax], symmetric; same shape."""
    scale = weight_scales(weight, qmax, per_channel)
    if per_channel:
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -qmax, qmax)
    zero = torch.zeros(1, dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_tensor_affine(weight, scale, zero, -qmax, qmax)


class Int8Linear(nn.Linear):
    """nn.Linear computing with int8-rounded input and weight; its parameters are the Linear's
    own (the same tensors, the same state-dict names)."""

    qmax: int = FULL_RANGE
    per_channel: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., K) -> (..., N)
        weight = quantize_weight(self.weight, self.qmax, self.per_channel)
        return nn.functional.linear(quantize_activation(x), weight, self.bias)


def _swap(linear: nn.Linear, kind: type[nn.Linear]) -> nn.Linear:
    """A `kind` module around `linear`'s own weight and bias tensors."""
    swapped = kind.__new__(kind)
    nn.Module.__init__(swapped)
    swapped.in_features, swapped.out_features = linear.in_features, linear.out_features
    swapped.weight = linear.weight
    swapped.bias = linear.bias
    swapped.train(linear.training)
    return swapped


def attach(model: nn.Module, target: Int8Target) -> dict[str, int]:
    """Replace every nn.Linear of `model` by an Int8Linear on the same parameters, in place;
    returns {module name: its weight's qmax}."""
    found = {}
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear:
            continue
        swapped = _swap(module, Int8Linear)
        swapped.qmax = REDUCED_RANGE if target.reduce_range else FULL_RANGE
        swapped.per_channel = target.per_channel
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, swapped)
        found[name] = swapped.qmax
    return found


def detach(model: nn.Module) -> int:
    """Put a plain nn.Linear back for every Int8Linear of `model`, in place; how many."""
    count = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, Int8Linear):
            parent, _, child = name.rpartition(".")
            setattr(
                model.get_submodule(parent) if parent else model, child, _swap(module, nn.Linear)
            )
            count += 1
    return count
