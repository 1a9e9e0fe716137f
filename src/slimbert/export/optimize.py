"""Graph fusion with ONNX Runtime's transformer optimizer, and a report of what fused.

`onnxruntime.transformers.optimizer` rewrites the exported BERT graph into ONNX Runtime's fused
contrib ops. Per encoder layer it looks for these subgraphs:

    x ─┬─ MatMul ─ Add ─ Reshape ─ Transpose ───────────┐                                   Q
       ├─ MatMul ─ Add ─ Reshape ─ Transpose ─ (scale) ─┴─ MatMul ─ Add(mask) ─ Softmax ─┐   K
       └─ MatMul ─ Add ─ Reshape ─ Transpose ─────────────────────────────────────────── MatMul   V
                                                             ┌──────────────────────────────┘
                                                             └─ Transpose ─ Reshape
                                        ⇒  Attention (one packed QKV GEMM)

    h ─ MatMul ─ Add(bias) ─ Add(residual) ─ LayerNormalization   ⇒  MatMul ─ SkipLayerNormalization
    h ─ MatMul ─ Add(bias) ─ Div ─ Erf ─ Add ─ Mul ─ Mul          ⇒  MatMul ─ BiasGelu
                                                                      (FastGelu if approximated)

and once for the embeddings:

    Gather(word) ─ Add ─ Gather(position) ─ Add ─ Gather(token type) ─ LayerNormalization
                                                                   ⇒  EmbedLayerNormalization

Why optimum's O2 brought no speed-up on the CPU (measured on this project's 2-core AVX-512 VNNI
EPYC, onnxruntime 1.32, MiniLM-L6, batch 1 × 64 tokens, one intra-op thread, interleaved runs):

1. Attention *does* fuse, from both the SDPA export optimum writes by default (scale applied as
   √scale to Q and K: 3 Sqrt per layer) and an eager export (one Div per layer): 6 Attention,
   12 SkipLayerNormalization, 6 BiasGelu, 1 EmbedLayerNormalization either way. The SDPA pattern
   is matched since onnxruntime 1.20 (microsoft/onnxruntime#22629); before that an SDPA export
   fused no attention at all. We export with eager attention anyway: it is the exact module the
   parity check runs, and its pattern is the one every onnxruntime release recognises. It is
   also the one that fuses on transformers 5: there SDPA gets a boolean mask, and torch's export
   of it guards the Softmax against fully masked rows (IsNaN → Where), which onnxruntime 1.32's
   attention pattern does not match, so an SDPA export runs unfused (and the report says so).
2. The model is GEMM-bound: ONNX Runtime's profiler puts 84 % of the plain graph's kernel time in
   MatMul. The fused ops keep the very same GEMMs (Attention packs Q, K and V into one), so fusion
   can only win back part of the remaining ~15 % of element-wise glue — and ONNX Runtime's own
   session-time optimizer already fuses some of it (BiasGelu, MatMul+scale) in the plain graph.
3. The CPU SkipLayerNormalization kernel is *slower* than what it replaces: 137 µs against 32 µs
   for Add + Add + LayerNormalization on a (1, 64, 384) tensor, 655 against 116 µs at (8, 40, 384).
   Twelve of them cost O2 about what fusing Attention and Gelu won (whole model, fp32: 17.5 ms
   fully fused against 16.5 ms plain). In int8, where the GEMMs shrink, they cost more: the
   dynamic-int8 teacher takes 7.15 ms with them and 6.00 ms without (8 × 40 tokens: 33.3 / 27.1).
   ONNX Runtime re-fuses SkipLayerNormalization when a session loads a graph whose shapes it
   can infer, so leaving it out of the file is not enough; the session must skip that fusion.

So the CPU preset fuses Attention, EmbedLayerNormalization and BiasGelu but not
SkipLayerNormalization, and asks the session (through the manifest's `runtime` hints, read by
`OnnxClassifier`) not to re-fuse it online; int8 (export/quantize.py) is what cuts GEMM time.
The CUDA preset fuses everything: on the GPU fused kernels save launches and memory traffic.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slimbert.errors import SlimbertError
from slimbert.families import Family, family_of

# onnx and onnxruntime's tools load inside the functions that run them: the configs below are
# built (CLI, recipes, experiments) without them.

log = logging.getLogger(__name__)

# Fused op types reported; counts of anything else are not a fusion.
FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "QAttention",
    "SkipLayerNormalization",
    "EmbedLayerNormalization",
    "QEmbedLayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
)

# The online fusion ONNX Runtime applies at session creation that the CPU preset turns off.
SKIP_LAYER_NORM_ONLINE = "SkipLayerNormFusion"

# Whether the optimizer's "bert" Attention fusion matches a family's exported graph, and why not,
# is `slimbert.families.Family.fusion` / `fusion_note`; the other fusions (Gelu, LayerNorm) run
# on every family's graph, and the parity gate checks the result.


@dataclass(frozen=True)
class OptimizeConfig:
    """Which fusions ONNX Runtime's transformer optimizer may apply.

    provider:          "cpu" or "cuda": the optimizer picks kernels that exist on that provider
    attention:         fuse self-attention into one Attention op (packed QKV GEMM)
    skip_layer_norm:   fuse residual Add (+ bias) + LayerNormalization into SkipLayerNormalization
    embed_layer_norm:  fuse the three embedding Gathers + LayerNormalization
    bias_gelu:         fuse the FFN bias Add + erf Gelu into BiasGelu
    gelu_approximation: replace erf Gelu by the tanh approximation (FastGelu); changes logits ~1e-3
    raw_attention_mask: feed Attention the (B, L) 0/1 mask as is; False converts it to per-row
                        lengths, which assumes right padding
    """

    provider: str = "cpu"
    attention: bool = True
    skip_layer_norm: bool = False
    embed_layer_norm: bool = True
    bias_gelu: bool = True
    gelu_approximation: bool = False
    raw_attention_mask: bool = True

    @classmethod
    def cpu(cls) -> OptimizeConfig:
        """Attention, EmbedLayerNorm, BiasGelu; SkipLayerNormalization is slower on the CPU (see
        top)."""
        return cls(provider="cpu", skip_layer_norm=False)

    @classmethod
    def cuda(cls) -> OptimizeConfig:
        """Every fusion: on the GPU each saves kernel launches and a round trip to memory."""
        return cls(provider="cuda", skip_layer_norm=True)

    @classmethod
    def for_provider(cls, provider: str) -> OptimizeConfig:
        if provider not in ("cpu", "cuda"):
            raise SlimbertError(f"--provider {provider!r}: choose cpu or cuda")
        return cls.cuda() if provider == "cuda" else cls.cpu()

    def runtime_hints(self) -> dict:
        """Session settings the artifact should be run with (recorded in the manifest)."""
        if self.provider == "cpu" and not self.skip_layer_norm:
            return {"disabled_optimizers": [SKIP_LAYER_NORM_ONLINE]}
        return {}


@dataclass
class FusionReport:
    """Fused-op counts in an optimized graph, against what a full fusion of `layers` would give."""

    counts: dict[str, int]
    layers: int
    expected: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    attention_note: str = ""  # fused or not, and why (from the model's family)

    @property
    def attention(self) -> int:
        return sum(
            self.counts.get(op, 0) for op in ("Attention", "MultiHeadAttention", "QAttention")
        )

    def to_dict(self) -> dict:
        return {
            "counts": self.counts,
            "layers": self.layers,
            "expected": self.expected,
            "warnings": self.warnings,
            "attention": self.attention_note,
        }

    def summary(self) -> str:
        shown = ", ".join(f"{op} {n}" for op, n in self.counts.items() if n)
        return shown or "nothing fused"


def fusion_counts(model) -> dict[str, int]:
    """Count each op type of FUSED_OPS in an onnx.ModelProto (or a path to one)."""
    import onnx

    if not hasattr(model, "graph"):
        model = onnx.load(str(model), load_external_data=False)
    found = collections.Counter(node.op_type for node in model.graph.node)
    return {op: found.get(op, 0) for op in FUSED_OPS}


def _architecture(hf_config) -> tuple[Family, int, int, int]:
    """(family, heads, hidden size, layers) from a transformers config."""
    family = family_of(hf_config)
    return (
        family,
        family.size(hf_config, "heads"),
        family.size(hf_config, "width"),
        family.size(hf_config, "depth"),
    )


def attention_note(family: Family, counts: dict[str, int], layers: int, config) -> str:
    """Whether attention fused, in how many layers, and why (not)."""
    if not config.attention:
        return "attention fusion turned off"
    fused = counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0)
    if not fused:
        return f"{family.name}: attention not fused: {family.fusion_note}"
    # What the graph shows wins over the family's expectation: a transformers release can change
    # a family's exported attention (DistilBERT's adds its mask on 5.x and fuses there).
    return f"{family.name}: attention fused in {fused} of {layers} layers: {family.fusion_note}"


def expected_counts(
    layers: int, config: OptimizeConfig, fuses_attention: bool = True
) -> dict[str, int]:
    """What a complete fusion of a `layers`-deep BERT gives under `config`; `fuses_attention`
    False for a family whose attention no fusion matches (`Family.fusion` None)."""
    attention = config.attention and fuses_attention
    return {
        "Attention": layers if attention else 0,
        "SkipLayerNormalization": 2 * layers if config.skip_layer_norm else 0,
        # onnxruntime fuses the embeddings only in front of a fused Attention
        "EmbedLayerNormalization": 1 if config.embed_layer_norm and attention else 0,
        "Gelu": layers if config.bias_gelu else 0,  # BiasGelu, FastGelu or Gelu
    }


def _check(counts: dict[str, int], expected: dict[str, int], layers: int) -> list[str]:
    """One warning per fusion that fell short of a full match."""
    warnings = []
    attention = counts["Attention"] + counts["MultiHeadAttention"]
    if expected["Attention"] and attention < expected["Attention"]:
        warnings.append(
            f"attention fused in {attention} of {layers} layers: the exported graph does not "
            "match ONNX Runtime's attention pattern, so those layers run unfused (correct, not "
            "faster); export with eager attention (the default) or upgrade onnxruntime"
        )
    gelu = counts["BiasGelu"] + counts["FastGelu"] + counts["Gelu"]
    if expected["Gelu"] and gelu < expected["Gelu"]:
        warnings.append(f"Gelu fused in {gelu} of {layers} layers")
    if (
        expected["SkipLayerNormalization"]
        and counts["SkipLayerNormalization"] < expected["SkipLayerNormalization"]
    ):
        warnings.append(
            f"SkipLayerNormalization fused {counts['SkipLayerNormalization']} of "
            f"{expected['SkipLayerNormalization']} times"
        )
    if expected["EmbedLayerNormalization"] and not counts["EmbedLayerNormalization"]:
        warnings.append("embedding LayerNormalization did not fuse")
    return warnings


def optimize(
    onnx_in: Path, onnx_out: Path, hf_config, config: OptimizeConfig = OptimizeConfig()
) -> FusionReport:
    """Fuse `onnx_in` for `config.provider`, write `onnx_out`, and report the fused-op counts.

    The graph keeps its inputs (B, L) int64 and its logits (B, C) float32. Only the optimizer's
    Python fusions and ONNX Runtime's provider-independent level-1 rewrites run, so the file is
    portable; hardware-specific rewrites happen when a session loads it.
    """
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    family, heads, hidden, layers = _architecture(hf_config)
    options = FusionOptions("bert")
    options.enable_attention = config.attention
    options.enable_skip_layer_norm = config.skip_layer_norm
    options.enable_bias_skip_layer_norm = config.skip_layer_norm
    options.enable_embed_layer_norm = config.embed_layer_norm
    options.enable_bias_gelu = config.bias_gelu
    options.enable_gelu = config.bias_gelu
    options.enable_gelu_approximation = config.gelu_approximation
    options.use_raw_attention_mask(config.raw_attention_mask)
    fused = optimizer.optimize_model(
        str(onnx_in),
        model_type="bert",
        num_heads=heads,
        hidden_size=hidden,
        optimization_options=options,
        opt_level=1,  # provider-independent rewrites only; use_gpu matters above level 1
    )
    fused.topological_sort()
    fused.save_model_to_file(str(onnx_out))
    counts = fusion_counts(fused.model)
    expected = expected_counts(layers, config, family.fusion is not None)
    report = FusionReport(
        counts,
        layers,
        expected,
        _check(counts, expected, layers),
        attention_note(family, counts, layers, config),
    )
    for warning in report.warnings:
        log.warning("%s: %s", onnx_in, warning)
    return report


def describe(config: OptimizeConfig, report: FusionReport) -> dict:
    """The manifest entry for this step."""
    return {
        "step": "onnxruntime.transformers.optimizer",
        "config": asdict(config),
        "fusions": report.to_dict(),
        "runtime": config.runtime_hints(),
    }
