"""How much arithmetic a BERT-family classifier does per request, and how much this machine can do.

FLOPs are counted from the model's config, matrix multiplies only, one multiply-add = 2 FLOPs.
For one example of L tokens through N layers of hidden size H, intermediate size I and C labels:

    per layer   Q, K, V projections            3 · 2·L·H·H
                scores   Q·Kᵀ  (all heads)         2·L·L·H
                context  P·V   (all heads)         2·L·L·H
                output projection                  2·L·H·H
                FFN up and down                2 · 2·L·H·I
    head        dense on the [CLS] vector          2·H·H      (BERT pooler, RoBERTa/ELECTRA head
                classifier                         2·H·C       dense, DistilBERT pre_classifier)

Embedding lookups, layer norms, softmax, GELU and bias adds are left out: together they are a
few percent of the total and bound by memory, not by the multipliers. A request of B examples
padded to L costs B times the per-example count: padding is computed, so it is counted.

The peak is measured, not read from a spec sheet: the best of several large square matrix
multiplies at the thread count the models ran with, fp32 through torch, int8 through an ONNX
Runtime `MatMulInteger` graph (the kernel dynamically quantized exports run on).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from slimbert.errors import SlimbertError
from slimbert.export.runtime import PROVIDERS

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class TransformerShape:
    """The sizes that set a BERT-family encoder's matmul count; read with `transformer_shape`."""

    layers: int  # N
    hidden: int  # H
    heads: int  # h; splits H but does not change the count
    intermediate: int  # I
    num_labels: int  # C
    head_dense: bool = True  # an H×H dense on [CLS] before the classifier

    def flops(self, length: int) -> int:
        """Matmul FLOPs of one example of `length` tokens (embeddings excluded)."""
        L, H, I = length, self.hidden, self.intermediate  # noqa: E741 - the docstring's names
        projections = 4 * 2 * L * H * H  # Q, K, V and output: (L, H) @ (H, H)
        # scores (h, L, d) @ (h, d, L) and context (h, L, L) @ (h, L, d)
        attention = 2 * (2 * L * L * H)
        ffn = 2 * (2 * L * H * I)  # (L, H) @ (H, I) and (L, I) @ (I, H)
        head = (2 * H * H if self.head_dense else 0) + 2 * H * self.num_labels
        return self.layers * (projections + attention + ffn) + head

    def request_flops(self, batch_size: int, length: int) -> int:
        """A request of `batch_size` examples all padded to `length`: input (B, L)."""
        return batch_size * self.flops(length)


# config.json spellings of the same sizes across the BERT family (BERT/RoBERTa/ELECTRA/ALBERT
# first, DistilBERT second, encoder-decoder style last)
_LAYERS = ("num_hidden_layers", "n_layers", "num_layers")
_HIDDEN = ("hidden_size", "dim", "d_model")
_HEADS = ("num_attention_heads", "n_heads", "encoder_attention_heads")
_INTERMEDIATE = ("intermediate_size", "hidden_dim", "ffn_dim", "d_ff", "encoder_ffn_dim")


def _first(config: dict, names: Iterable[str]) -> int | None:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def transformer_shape(config: dict) -> TransformerShape | None:
    """The shape of a BERT-family classifier from its config.json as a dict; None for a model
    that is not a transformer encoder (a TextCNN student has no such sizes)."""
    layers, hidden = _first(config, _LAYERS), _first(config, _HIDDEN)
    heads, intermediate = _first(config, _HEADS), _first(config, _INTERMEDIATE)
    if None in (layers, hidden, heads, intermediate):
        return None
    labels = config.get("id2label")
    num_labels = (
        len(labels) if isinstance(labels, dict) and labels else int(config.get("num_labels") or 2)
    )
    return TransformerShape(layers, hidden, heads, intermediate, num_labels)


@dataclass(frozen=True)
class Peak:
    """The best matrix-multiply rate measured at one precision, provider and thread count."""

    precision: str
    provider: str
    threads: int
    gflops: float  # GFLOP/s (int8: giga integer multiply-adds × 2 per second)
    method: str  # what was timed, e.g. "torch.mm fp32 1024³"
    size: int  # the square matrices' side


def _best_seconds(
    run: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
) -> float:
    """Shortest of `repeats` timed calls after two warm-up calls."""
    run()
    run()
    sync()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - began)
    return best


def _torch_rate(
    precision: str, provider: str, threads: int, size: int, repeats: int
) -> tuple[float, str] | None:
    import torch

    device = "cuda" if provider == "cuda" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        return None
    dtype = {"fp32": torch.float32, "fp16": torch.float16}.get(precision)
    if dtype is None or (dtype == torch.float16 and device == "cpu"):
        return None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)  # (n, n)
        b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)  # (n, n)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        seconds = _best_seconds(lambda: torch.mm(a, b), repeats, sync)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / seconds / 1e9, f"torch.mm {precision} {size}³ on {device}"


def _ort_rate(
    precision: str, provider: str, threads: int, size: int, repeats: int
) -> tuple[float, str] | None:
    """ONNX Runtime `MatMul` (fp32/fp16) or `MatMulInteger` (int8) with inputs and output bound
    on the device, so that the figure is the kernel's, not the host copies'."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    name = PROVIDERS[provider]
    if name not in ort.get_available_providers():
        return None
    rng = np.random.default_rng(0)
    if precision == "int8":
        # x86 dynamic quantization feeds uint8 activations against int8 weights; the CUDA kernel
        # takes int8 on both sides
        a_type = np.int8 if provider == "cuda" else np.uint8
        a = rng.integers(0 if a_type == np.uint8 else -128, 128, (size, size)).astype(a_type)
        b = rng.integers(-128, 128, (size, size)).astype(np.int8)
        op, out_type = "MatMulInteger", np.int32
    elif precision in ("fp32", "fp16"):
        dtype = np.float32 if precision == "fp32" else np.float16
        a, b = (
            rng.standard_normal((size, size)).astype(dtype),
            rng.standard_normal((size, size)).astype(dtype),
        )
        op, out_type = "MatMul", dtype
    else:
        return None
    to_onnx = helper.np_dtype_to_tensor_dtype
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])],
        "peak",
        [helper.make_tensor_value_info("A", to_onnx(a.dtype), [size, size])],
        [helper.make_tensor_value_info("Y", to_onnx(np.dtype(out_type)), [size, size])],
        [numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=[name]
        )
    except Exception:  # no kernel for this type on this provider: no peak, not a failed bench
        return None
    if session.get_providers()[0] != name:
        return None
    device = "cuda" if provider == "cuda" else "cpu"
    binding = session.io_binding()
    binding.bind_ortvalue_input("A", ort.OrtValue.ortvalue_from_numpy(a, device, 0))
    binding.bind_ortvalue_output(
        "Y", ort.OrtValue.ortvalue_from_shape_and_type([size, size], out_type, device, 0)
    )
    seconds = _best_seconds(lambda: session.run_with_iobinding(binding), repeats)
    return 2 * size**3 / seconds / 1e9, f"onnxruntime {op} {precision} {size}³ on {name}"


def measure_peak(
    precision: str,
    provider: str = "cpu",
    threads: int = 1,
    size: int | None = None,
    repeats: int = 10,
) -> Peak | None:
    """Best matmul rate at `precision` on `provider` with `threads` intra-op threads.

    fp32/fp16 use torch.mm (falling back to an ONNX Runtime MatMul graph where torch cannot
    reach the device); int8 uses ONNX Runtime MatMulInteger. None where the precision has no
    fast kernel here. On CUDA without a CUDA build of torch the fp32 figure comes from ONNX
    Runtime, whose CUDA MatMul may use TF32 as the models' own MatMuls do. `size` defaults to
    1024 on a CPU and 8192 on a GPU, big enough that the multiply, not the call, is what is
    timed.
    """
    if precision not in PRECISIONS:
        raise SlimbertError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    size = size or (8192 if provider == "cuda" else 1024)
    # The peak is the best any kernel in use reaches: ONNX Runtime's MLAS beats torch.mm on
    # some CPUs, and a peak below what a model achieves would put its share above 100%.
    candidates = (
        [_torch_rate(precision, provider, threads, size, repeats)]
        if precision in ("fp32", "fp16")
        else []
    )
    candidates.append(_ort_rate(precision, provider, threads, size, repeats))
    candidates = [c for c in candidates if c is not None]
    if not candidates:
        return None
    measured = max(candidates, key=lambda c: c[0])
    gflops, method = measured
    return Peak(precision, provider, threads, gflops, method, size)


def precision_of(manifest: dict) -> str:
    """fp32, fp16 or int8 of an export from its manifest: the `precision` entry, or where that
    is missing or fp32, the steps under `optimizations` (a quantize step makes it int8)."""

    def classify(text: str) -> str:
        text = text.lower()
        if "int8" in text or "quantiz" in text or "qdq" in text:
            return "int8"
        if "fp16" in text or "float16" in text:
            return "fp16"
        return "fp32"

    stated = classify(str(manifest.get("precision") or "fp32"))
    if stated != "fp32":
        return stated
    steps = [
        classify(str(step.get("step", "")) if isinstance(step, dict) else str(step))
        for step in manifest.get("optimizations") or []
    ]
    return next((p for p in steps if p != "fp32"), "fp32")
