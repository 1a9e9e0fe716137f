"""`slimbert export`'s flags as one settings dataclass: each flag's help, range and default is
written once, in its field (defaults taken from the config each one feeds), and `options()`
turns them into the `ExportOptions` the pipeline runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slimbert.cpu import int8_weights_saturate
from slimbert.export.onnx import PRECISIONS, ExportOptions
from slimbert.export.optimize import OptimizeConfig
from slimbert.export.quantize import CALIBRATION_METHODS, DynamicQuantConfig, StaticQuantConfig
from slimbert.export.triton_config import BACKENDS, TritonConfig
from slimbert.settings import setting

QUANTIZERS = ("dynamic", "static")
ATTENTION = ("eager", "sdpa")


@dataclass
class ExportSettings:
    """What `slimbert export` does to the graph and how each artifact is gated (the model, the
    eval file, the output folder, the columns and the provider are the command's own flags)."""

    max_length: int | None = setting(
        None, "Default: the model's training max length.", min=8, max=4096
    )
    opset: int | None = setting(None, "ONNX opset (default: optimum's choice).", min=11)
    max_abs_diff: float | None = setting(
        None,
        "Fail if any |ONNX − PyTorch| logit exceeds this (default per artifact: fp32 1e-4, "
        "--optimize 1e-3, fp16 5e-2, int8 not gated).",
        min=0,
    )
    min_agreement: float | None = setting(
        None,
        "Fail below this label agreement, in percent (default: fp32 100, --optimize 99.5, "
        "fp16 99, int8 97).",
        min=0,
        max=100,
    )
    max_f1_drop: float | None = setting(
        None,
        "Fail if the metric drops by more points than this (default: fp32 0, --optimize 0.1, "
        "fp16 0.5, int8 1).",
        min=0,
    )
    optimize: bool = setting(
        False,
        "Fuse with ONNX Runtime's transformer optimizer (Attention, EmbedLayerNorm, BiasGelu; "
        "SkipLayerNorm on cuda) and report fusion counts.",
        secondary=False,
    )
    quantize: str | None = setting(
        None,
        "int8 on the CPU: dynamic (no data) or static (calibrated on --calibration-data).",
        choices=QUANTIZERS,
    )
    per_channel: bool = setting(
        DynamicQuantConfig.per_channel,
        "int8: one weight scale per output column, or one per weight.",
        flag="--per-channel/--per-tensor",
    )
    reduce_range: bool = setting(
        help="int8: 7-bit weights (--reduce-range) or 8-bit (--full-range). Default: 7-bit on "
        "an x86 CPU without VNNI (AVX2 only), where ONNX Runtime's u8 x s8 product can saturate "
        "with 8-bit weights; 8-bit elsewhere. The parity gate measures this machine: export on "
        "the CPU type that serves, or give --reduce-range for a graph that holds on every x86.",
        factory=int8_weights_saturate,
        flag="--reduce-range/--full-range",
    )
    quantize_ops: str | None = setting(
        None,
        "int8: comma-separated op types (default: dynamic "
        f"{','.join(DynamicQuantConfig.op_types)}; static {','.join(StaticQuantConfig.op_types)}).",
    )
    calibration_data: Path | None = setting(
        None,
        "--quantize static: training file to draw calibration examples from (same columns as "
        "--eval).",
    )
    calibration_method: str = setting(
        StaticQuantConfig.method,
        "--quantize static: how each activation's int8 range is set from the calibration "
        "examples: minmax spans every value seen, entropy the range that keeps the values' "
        "distribution (least KL divergence), percentile clips the outer 0.001%. On the SST-2 "
        "MiniLM teacher they kept 97.9, 98.1 and 95.6% label agreement: clipping BERT's "
        "activation outliers flips labels.",
        choices=CALIBRATION_METHODS,
    )
    calibration_examples: int = setting(
        StaticQuantConfig.examples,
        "--quantize static: rows drawn from --calibration-data (a seeded shuffle) to measure "
        "the activation ranges on; more rows give ranges closer to the data's and a slower "
        "export.",
        min=1,
    )
    precision: str = setting(
        "fp32",
        "fp16 needs --provider cuda (LayerNorm/Softmax kept in fp32).",
        choices=PRECISIONS,
    )
    attention: str = setting(
        "eager", "Attention implementation traced into the graph.", choices=ATTENTION
    )
    triton: Path | None = setting(
        None,
        "Also write a Triton model repository here: ONNX model, tokenizer, raw-text ensemble, "
        "client.py.",
    )
    triton_max_batch_size: int = setting(
        TritonConfig.max_batch_size,
        "--triton: the largest batch Triton's dynamic batcher forms from requests waiting "
        "together (config.pbtxt max_batch_size); 0 turns batching off, each request runs alone.",
        min=0,
    )
    triton_backend: str = setting(
        TritonConfig.backend,
        "--triton: what runs the ONNX graph: Triton's onnxruntime backend (the NGC containers), "
        "or the Python backend with onnxruntime inside (any tritonserver build, the pip one "
        "included; its Python environment needs onnxruntime, tokenizers and numpy).",
        choices=BACKENDS,
    )
    triton_instances: int = setting(
        TritonConfig.instances,
        "--triton: model instances of the tokenizer and of the ONNX model (config.pbtxt "
        "instance_group count): requests in flight at once, each instance its own session.",
        min=1,
    )
    triton_queue_delay_us: int = setting(
        TritonConfig.max_queue_delay_us,
        "--triton: how long (µs) the dynamic batcher waits for more requests to fill a batch.",
        min=0,
    )

    triton_deploy: bool = setting(
        False,
        "--triton: also write REPO-deploy/ beside it: a Dockerfile (tritonserver plus what the "
        "Python models import), a KServe InferenceService (Triton predictor) and a plain "
        "Deployment + Service, for a cluster to apply.",
    )
    triton_image: str | None = setting(
        None,
        "--triton-deploy: the image the manifests run, as your cluster pulls it (build it from "
        "REPO-deploy/Dockerfile; default slimbert-triton-NAME:latest).",
    )
    triton_storage_uri: str | None = setting(
        None,
        "--triton-deploy: where the cluster reads the repository: pvc://CLAIM/PATH (KServe and "
        "the Deployment), or s3://, gs://, ... (KServe only). Default pvc://slimbert-models/REPO.",
    )

    def quantizer(self) -> DynamicQuantConfig | StaticQuantConfig | None:
        ops = (
            {"op_types": tuple(o.strip() for o in self.quantize_ops.split(",") if o.strip())}
            if self.quantize_ops
            else {}
        )
        common = {"per_channel": self.per_channel, "reduce_range": self.reduce_range, **ops}
        if self.quantize == "dynamic":
            return DynamicQuantConfig(**common)
        if self.quantize == "static":
            return StaticQuantConfig(
                method=self.calibration_method,
                calibration_file=self.calibration_data,
                examples=self.calibration_examples,
                **common,
            )
        return None

    def options(self, provider: str) -> ExportOptions:
        """The pipeline's steps for `provider`."""
        triton = (
            TritonConfig(
                self.triton,
                kind="gpu" if provider == "cuda" else "cpu",
                max_batch_size=self.triton_max_batch_size,
                backend=self.triton_backend,
                instances=self.triton_instances,
                max_queue_delay_us=self.triton_queue_delay_us,
                deploy=self.triton_deploy,
                image=self.triton_image,
                storage_uri=self.triton_storage_uri,
            )
            if self.triton
            else None
        )
        return ExportOptions(
            optimize=OptimizeConfig.for_provider(provider) if self.optimize else None,
            quantize=self.quantizer(),
            precision=self.precision,
            triton=triton,
            attention=self.attention,
        )
