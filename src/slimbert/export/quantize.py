"""int8 quantization of an exported (plain or fused) classifier with ONNX Runtime.

Dynamic: weights are int8 once and for all, activations are quantized per call from their own
range (DynamicQuantizeLinear → MatMulInteger / QAttention on the CPU). No calibration data.

Static: activation ranges are fixed beforehand from training examples (MinMax, Percentile or
Entropy calibration) and written as QuantizeLinear/DequantizeLinear pairs (QDQ) that ONNX Runtime
folds into QLinear kernels at session time.

Why optimum's path (ORTOptimizer O2, then ORTQuantizer avx512_vnni) fails on onnxruntime 1.32
with "Unable to find data type for weight_name=.../attention/output/dense/MatMul_output_0":
the quantizer needs the element type of every tensor it touches and gets it from
`onnx.shape_inference`, which knows only the standard ONNX domain. After fusion, the output
projection's MatMul reads the output of a `com.microsoft` Attention node, so ONNX's inference
stops there and every tensor downstream of it has no type. ONNX Runtime's own
`quantize_dynamic` fails the same way on a fused graph. The fix is to annotate the graph with
ONNX Runtime's symbolic shape inference, which implements the contrib ops, before quantizing
(`annotate_types`); that is what `quantize_dynamic_model` and `quantize_static_model` do, so the
fused Attention becomes QAttention and the fused graph quantizes like the plain one.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slimbert.cpu import int8_weights_saturate
from slimbert.errors import SlimbertError

# onnx and onnxruntime's tools load inside the functions that run them: the configs below are
# built (CLI, recipes, experiments) without them.

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
WEIGHT_TYPES = ("int8", "uint8")

# Quantized op types that show an artifact is int8 (counted in the manifest).
QUANTIZED_OPS = (
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QAttention",
    "QEmbedLayerNormalization",
    "QLinearMatMul",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QGemm",
)


@dataclass(frozen=True)
class DynamicQuantConfig:
    """Dynamic int8: weights quantized offline, activations per call.

    per_channel:  one scale per output column of each weight. On the SST-2 MiniLM teacher
                  per-tensor scales cost 1.3 F1 points (96.6 % label agreement), per-channel
                  0.2 (99.0 %), at the same speed
    reduce_range: 7-bit weights, for CPUs without VNNI where u8×s8 products can saturate
                  (default: on where this CPU is one of them, cpu.int8_weights_saturate, so
                  that the parity gate measures what this machine will serve)
    op_types:     ops to quantize; MatMul and the fused Attention carry almost all the time.
                  Add "Gather"/"EmbedLayerNormalization" to also shrink the embedding table.
    weight_type:  int8 or uint8
    """

    per_channel: bool = True
    reduce_range: bool = field(default_factory=int8_weights_saturate)
    op_types: tuple[str, ...] = ("MatMul", "Attention")
    weight_type: str = "int8"

    def __post_init__(self):
        if self.weight_type not in WEIGHT_TYPES:
            raise SlimbertError(
                f"weight type {self.weight_type!r}: choose one of {', '.join(WEIGHT_TYPES)}"
            )
        if not self.op_types:
            raise SlimbertError("--quantize-ops: name at least one op type, e.g. MatMul,Attention")

    @classmethod
    def avx512_vnni(cls) -> DynamicQuantConfig:
        """CPUs with AVX-512 VNNI (VPDPBUSD does u8×s8 → s32 in one instruction): full 8-bit
        range."""
        return cls(per_channel=True, reduce_range=False)

    @classmethod
    def avx2(cls) -> DynamicQuantConfig:
        """AVX2 without VNNI: VPMADDUBSW can saturate with 8-bit weights, so keep them 7-bit."""
        return cls(per_channel=True, reduce_range=True)


@dataclass(frozen=True)
class StaticQuantConfig:
    """Static int8 (QDQ): activation ranges calibrated on training examples.

    method:        minmax | percentile | entropy. Measured on the SST-2 MiniLM teacher (per-channel,
                   128 examples): minmax −0.3 F1 / 97.9 % agreement, entropy −0.5 / 98.1 %,
                   percentile −0.2 / 95.6 % (clipping BERT's activation outliers flips labels)
    calibration_file: training file to draw the calibration examples from (required)
    examples:      calibration examples, drawn by a seeded shuffle of the file
    batch_size:    calibration batch size (each batch padded to its own longest example)
    percentile:    the share of values percentile calibration keeps inside the range
    per_channel:   one scale per output column of each weight (per-tensor: −0.7 F1 more)
    reduce_range:  7-bit weights (default: on a CPU without VNNI, as for dynamic int8)
    op_types:      ops to quantize. QDQ has no Attention kernel: a fused Attention would keep its
                   Q/K/V GEMM in float (8.2 against 6.3 ms), so the pipeline does not fuse
                   attention before static quantization
    symmetric_activations: int8 activations centred on 0 instead of uint8 with a zero point
    seed:          shuffle seed for drawing the calibration examples
    """

    method: str = "minmax"
    calibration_file: Path | None = None
    examples: int = 256
    batch_size: int = 8
    percentile: float = 99.999
    per_channel: bool = True
    reduce_range: bool = field(default_factory=int8_weights_saturate)
    op_types: tuple[str, ...] = ("MatMul",)
    symmetric_activations: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.method not in CALIBRATION_METHODS:
            raise SlimbertError(
                f"--calibration-method {self.method!r}: "
                f"choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if not 0 < self.percentile <= 100:
            raise SlimbertError(
                f"--calibration-percentile {self.percentile}: give a value in (0, 100]"
            )
        if self.examples < 1 or self.batch_size < 1:
            raise SlimbertError("--calibration-examples and the calibration batch size must be ≥ 1")


@dataclass
class QuantReport:
    """What quantization did: op counts after, and the calibration it used (static only)."""

    mode: str  # "dynamic" or "static"
    quantized_ops: dict[str, int]
    calibration_examples: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def annotate_types(model):
    """Give every tensor of an onnx.ModelProto an element type and shape where they can be found.

    ONNX Runtime's symbolic shape inference implements the com.microsoft ops the transformer
    optimizer writes (Attention, SkipLayerNormalization, BiasGelu, ...); onnx.shape_inference
    does not, which is what breaks quantizing a fused graph (see the top of this module).
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        annotated = SymbolicShapeInference.infer_shapes(
            model, auto_merge=True, guess_output_rank=True
        )
    except Exception as exc:  # the inference raises bare Exceptions on graphs it cannot follow
        raise SlimbertError(
            f"symbolic shape inference failed on the graph to quantize ({exc}); "
            "quantize the export without --optimize"
        ) from exc
    if annotated is None:
        raise SlimbertError(
            "symbolic shape inference could not type the graph to quantize; "
            "quantize the export without --optimize"
        )
    return annotated


class _DropPreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizer advises pre-processing on the root logger at every call;
    `annotate_types` is the part of that pre-processing a fused graph needs."""
    advice = _DropPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice)


def quantized_op_counts(model) -> dict[str, int]:
    found = collections.Counter(node.op_type for node in model.graph.node)
    return {op: found[op] for op in QUANTIZED_OPS if found[op]}


def _weight_type(name: str):
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if name == "int8" else QuantType.QUInt8


def quantize_dynamic_model(
    onnx_in: Path, onnx_out: Path, config: DynamicQuantConfig = DynamicQuantConfig()
) -> QuantReport:
    """Dynamic int8 of `onnx_in` (fused or not) into `onnx_out`; inputs (B, L) int64, logits
    (B, C) float32."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    annotated = annotate_types(onnx.load(str(onnx_in)))
    with _quiet_quantizer():
        quantize_dynamic(
            annotated,
            str(onnx_out),
            op_types_to_quantize=list(config.op_types),
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            weight_type=_weight_type(config.weight_type),
        )
    return QuantReport(
        "dynamic", quantized_op_counts(onnx.load(str(onnx_out), load_external_data=False))
    )


class BatchReader:
    """ONNX Runtime CalibrationDataReader over pre-tokenised batches: dicts name → (B, L) int64."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches = batches
        self._iterator: Iterator | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iterator is None:
            self._iterator = iter(self.batches)
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = None


def calibration_batches(
    tokenizer, examples, input_names: list[str], max_length: int, config: StaticQuantConfig
) -> list[dict[str, np.ndarray]]:
    """`config.examples` examples drawn by a seeded shuffle, tokenised in batches of
    `config.batch_size`: dicts name → (B, L) int64. MinMax batches are padded to their own
    longest row; the histogram methods need one L for all batches (the longest example)."""
    if len(examples) == 0:
        raise SlimbertError(f"{config.calibration_file}: no examples to calibrate on")
    order = np.random.default_rng(config.seed).permutation(len(examples))[: config.examples]
    picked = examples.subset(sorted(int(i) for i in order))
    padding: dict = {"padding": True}
    if config.method != "minmax":
        # ONNX Runtime's histogram calibrators stack each tensor over all batches, so every
        # batch must have the same length: the longest calibration example's
        lengths = tokenizer(
            picked.texts,
            picked.text_pairs if picked.is_pair else None,
            truncation=True,
            max_length=max_length,
        )["input_ids"]
        padding = {"padding": "max_length", "max_length": max(len(ids) for ids in lengths)}
    batches = []
    for start in range(0, len(picked), config.batch_size):
        texts = picked.texts[start : start + config.batch_size]
        pairs = picked.text_pairs[start : start + config.batch_size] if picked.is_pair else None
        encoded = tokenizer(
            texts,
            pairs,
            truncation=True,
            return_tensors="np",
            **({"max_length": max_length} | padding),
        )
        missing = [name for name in input_names if name not in encoded]
        if missing:
            raise SlimbertError(
                f"the tokenizer gives no {', '.join(missing)} that the ONNX graph takes; "
                "re-export the model with its own tokenizer"
            )
        batches.append({name: encoded[name].astype(np.int64) for name in input_names})
    return batches


def quantize_static_model(
    onnx_in: Path, onnx_out: Path, batches: list[dict[str, np.ndarray]], config: StaticQuantConfig
) -> QuantReport:
    """Static int8 (QDQ) of `onnx_in` into `onnx_out`, ranges calibrated on `batches`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    annotated = annotate_types(onnx.load(str(onnx_in)))
    extra = {
        "ActivationSymmetric": config.symmetric_activations,
        "WeightSymmetric": True,
        "CalibPercentile": config.percentile,
        # Only MatMuls against a weight: activation×activation products (Q·Kᵀ) lose the most.
        "MatMulConstBOnly": True,
        # Keep MatMul outputs float: ONNX Runtime then runs DQ→MatMul as MatMulIntegerToFloat,
        # and the residual adds and Gelu see no second rounding.
        "OpTypesToExcludeOutputQuantization": ["MatMul"],
    }
    with tempfile.TemporaryDirectory(prefix="slimbert-calibration-") as scratch, _quiet_quantizer():
        # The calibrator writes an augmented copy of the model next to this path.
        source = Path(scratch) / "model.onnx"
        onnx.save(annotated, str(source))
        quantize_static(
            str(source),
            str(onnx_out),
            BatchReader(batches),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(config.op_types),
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            activation_type=QuantType.QInt8 if config.symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[config.method],
            extra_options=extra,
        )
    calibrated = sum(len(next(iter(b.values()))) for b in batches)
    return QuantReport(
        "static",
        quantized_op_counts(onnx.load(str(onnx_out), load_external_data=False)),
        calibrated,
    )


def describe(config: DynamicQuantConfig | StaticQuantConfig, report: QuantReport) -> dict:
    """The manifest entry for this step."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    step = (
        "onnxruntime.quantization.quantize_dynamic"
        if report.mode == "dynamic"
        else "onnxruntime.quantization.quantize_static"
    )
    return {"step": step, "config": settings, **report.to_dict()}


@dataclass(frozen=True)
class Fp16Config:
    """Half precision for the CUDA provider.

    fp32_ops: op types kept in float32. A standalone LayerNormalization or Softmax reduces over a
              whole row, where fp16's 10-bit mantissa and 65504 ceiling lose the mean/variance or
              overflow exp(); Cast nodes go around them. The fused ops of an optimized graph
              (SkipLayerNormalization, EmbedLayerNormalization, Attention) take fp16 tensors but
              accumulate in fp32 inside ONNX Runtime's CUDA kernels, so they are not blocked.
    The graph's inputs stay int64 and its logits stay float32, so callers see no difference.
    """

    fp32_ops: tuple[str, ...] = ("LayerNormalization", "SimplifiedLayerNormalization", "Softmax")


def convert_fp16(onnx_in: Path, onnx_out: Path, config: Fp16Config = Fp16Config()) -> dict:
    """Convert `onnx_in` to fp16 weights and activations (io kept int64 / float32) into `onnx_out`.

    Returns {"fp16_initializers": n, "fp32_ops": {op: n}, "casts": n} for the manifest.
    """
    import onnx
    from onnx import TensorProto
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    from onnxruntime.transformers.onnx_model import OnnxModel

    wrapped = OnnxModel(annotate_types(onnx.load(str(onnx_in))))
    wrapped.convert_float_to_float16(
        use_symbolic_shape_infer=False,  # already annotated above, contrib ops included
        keep_io_types=True,
        op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(config.fp32_ops)),
    )
    wrapped.save_model_to_file(str(onnx_out))
    graph = wrapped.model.graph
    found = collections.Counter(node.op_type for node in graph.node)
    return {
        "fp16_initializers": sum(
            1 for t in graph.initializer if t.data_type == TensorProto.FLOAT16
        ),
        "fp32_initializers": sum(1 for t in graph.initializer if t.data_type == TensorProto.FLOAT),
        "fp32_ops": {op: found[op] for op in config.fp32_ops if found[op]},
        "casts": found["Cast"],
    }
