"""Export a classifier to ONNX, optionally fuse, quantize or halve it, and prove every artifact
still matches PyTorch on real data.

The pipeline, each step validated on the whole eval file against the PyTorch model before the
next one runs (export/validate.py: label agreement, Δmetric, max and mean |Δlogit|; NaN or Inf
always fails):

    export (eager attention, fp32) ─▶ optimize (export/optimize.py: fused Attention, Gelu, ...)
        ─▶ quantize dynamic | static int8 (export/quantize.py, CPU)   or   fp16 (CUDA)
        ─▶ Triton model repository (export/triton.py), when asked

Only the last artifact is kept. The folder written loads as it is in ONNX Runtime, in optimum's
`ORTModelForSequenceClassification.from_pretrained(folder)`, and in `slimbert serve`:

    out/
      model.onnx            dynamic axes: batch_size, sequence_length
      config.json           with id2label
      tokenizer files
      slimbert.json         the model's own record (method, teacher, metric, ...)
      manifest.json         (export/manifest.py) inputs, outputs, opset, exporter, precision,
                            optimizations with fusion counts, runtime hints, the provider
                            validated on, validation figures of every step, file sizes and hashes
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from slimbert.batches import EncodedDataset, label_targets
from slimbert.cards import write_card
from slimbert.compress.fake_quant import Int8Target
from slimbert.data import Columns, read_examples
from slimbert.errors import SlimbertError
from slimbert.export import optimize as optimizing
from slimbert.export import quantize as quantizing
from slimbert.export import torch_onnx, triton
from slimbert.export.custom import export_student
from slimbert.export.manifest import build_manifest, graph_signature
from slimbert.export.optimize import OptimizeConfig
from slimbert.export.quantize import DynamicQuantConfig, StaticQuantConfig
from slimbert.export.triton import TritonConfig
from slimbert.export.validate import Tolerances, Validator
from slimbert.families import model_input_names
from slimbert.files import MANIFEST_FILE, ONNX_FILE, atomic_dir, write_json_atomic
from slimbert.models import (
    load_classifier,
    load_model_dir,
    model_label_map,
    model_task,
    student_architecture,
)
from slimbert.record import write_record

PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class ExportOptions:
    """What happens to the exported graph, in this order; each step is validated.

    optimize:   ONNX Runtime transformer fusions (None: the plain export)
    quantize:   int8, dynamic or static (CPU provider only)
    precision:  fp32, or fp16 (CUDA provider only; not with quantize)
    triton:     also write a Triton model repository for the final artifact
    attention:  attention implementation the model is traced with: eager (default, matches every
                onnxruntime's fusion pattern) or sdpa (what optimum exports by default)
    The final artifact is held to the `tolerances` given to `export` (default: its preset,
    `final_tolerances()`); every step before it to its own preset.
    """

    optimize: OptimizeConfig | None = None
    quantize: DynamicQuantConfig | StaticQuantConfig | None = None
    precision: str = "fp32"
    triton: TritonConfig | None = None
    attention: str = "eager"

    def check(self, provider: str) -> None:
        """Refuse combinations that cannot run, or run slower than fp32, on `provider`."""
        if self.precision not in PRECISIONS:
            raise SlimbertError(
                f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)} "
                "(int8 comes from --quantize)"
            )
        if self.attention not in ("eager", "sdpa"):
            raise SlimbertError(
                f"attention implementation {self.attention!r}: choose eager or sdpa"
            )
        if self.precision == "fp16" and provider != "cuda":
            raise SlimbertError(
                "--precision fp16 needs --provider cuda: ONNX Runtime's CPU provider has no fp16 "
                "kernels for most ops and wraps them in Casts, slower than fp32; on the CPU use "
                "--quantize dynamic"
            )
        if self.quantize is not None and self.precision == "fp16":
            raise SlimbertError(
                "--quantize and --precision fp16 exclude each other; pick int8 (CPU) or fp16 (CUDA)"
            )
        if isinstance(self.quantize, DynamicQuantConfig) and provider != "cpu":
            raise SlimbertError(
                "--quantize dynamic runs on --provider cpu only: CUDA has no "
                "MatMulInteger/QAttention kernels, so ONNX Runtime would run them on the CPU "
                "between GPU ops; on CUDA use --precision fp16"
            )
        if isinstance(self.quantize, StaticQuantConfig):
            if provider != "cpu":
                raise SlimbertError(
                    "--quantize static runs on --provider cpu only (CUDA needs TensorRT for QDQ "
                    "int8); on CUDA use --precision fp16"
                )
            if self.quantize.calibration_file is None:
                raise SlimbertError(
                    "--quantize static needs --calibration-data TRAIN_FILE: activation ranges "
                    "come from training examples"
                )
            if not Path(self.quantize.calibration_file).is_file():
                raise SlimbertError(
                    f"--calibration-data {self.quantize.calibration_file}: no such file"
                )
        if self.optimize is not None and self.optimize.provider != provider:
            raise SlimbertError(
                f"--optimize for {self.optimize.provider} but --provider {provider}; "
                "optimize for the provider you validate on"
            )

    @property
    def final_precision(self) -> str:
        return "int8" if self.quantize is not None else self.precision

    @property
    def last_step(self) -> str:
        """The step whose artifact is kept: quantize, fp16, optimize or export."""
        if self.quantize is not None:
            return "quantize"
        if self.precision == "fp16":
            return "fp16"
        return "optimize" if self.optimize is not None else "export"

    def final_tolerances(self) -> Tolerances:
        """The preset gates of the artifact these options produce."""
        final = self.final_precision
        return Tolerances.preset(
            "fused" if final == "fp32" and self.optimize is not None else final
        )


def _export_graph(
    model, tokenizer, model_dir: Path, staging: Path, opset: int | None, attention: str
) -> str:
    """Trace `model` into staging/model.onnx (+ config, tokenizer); returns the exporter's name."""
    if student_architecture(model_dir) is not None:  # textcnn, bilstm, tree: not an HF model
        return export_student(model, tokenizer, Path(model_dir), staging, opset)
    traced = model
    if attention != "eager":
        traced = load_classifier(model_dir, attn_implementation=attention).eval()
    if not torch_onnx.optimum_exporter_installed():  # transformers 5: optimum-onnx caps it
        exporter = torch_onnx.export_classifier(
            traced, model_input_names(traced, tokenizer), staging, opset
        )
        tokenizer.save_pretrained(str(staging))
        return f"{exporter} ({attention} attention)"
    # optimum's exporters take seconds to import; only this path needs them
    from optimum.exporters.onnx import onnx_export_from_model

    onnx_export_from_model(
        traced,
        str(staging),
        task="text-classification",
        opset=opset,
        do_validation=False,
        preprocessors=[tokenizer],
    )
    tokenizer.save_pretrained(str(staging))
    return f"optimum.exporters.onnx.onnx_export_from_model ({attention} attention)"


def checked_signature(onnx_path: Path, model, tokenizer) -> dict:
    """The exported graph's signature; one line when its inputs are not what the tokenizer
    makes and the model reads."""
    signature = graph_signature(onnx_path)
    graph_inputs = {i["name"] for i in signature["inputs"]}
    expected = set(model_input_names(model, tokenizer))
    if graph_inputs != expected:
        raise SlimbertError(
            f"exported inputs {sorted(graph_inputs)} differ from the model's "
            f"{sorted(expected)} (what the tokenizer makes and the model reads)"
        )
    return signature


def tuned_for(record, quantize) -> Int8Target | None:
    """The int8 graph a `compress qat` student was tuned for under simulated int8, when this
    export writes that graph (dynamic int8, the same weight scales); None for every other model
    or graph."""
    tuned = record.method_config or {}
    if record.method != "qat" or not isinstance(quantize, DynamicQuantConfig):
        return None
    if not tuned.get("simulate_int8", True):  # the fp32-tuned control: an ordinary model
        return None
    target = Int8Target(quantize.per_channel, quantize.reduce_range)
    same = (tuned.get("per_channel", True), tuned.get("reduce_range", False)) == (
        target.per_channel,
        target.reduce_range,
    )
    return target if same else None


def export(
    model_dir: Path,
    eval_path: Path,
    out: Path,
    columns: Columns = Columns(),
    max_length: int | None = None,
    tolerances: Tolerances | None = None,
    opset: int | None = None,
    provider: str = "cpu",
    options: ExportOptions | None = None,
) -> dict:
    """Export `model_dir` to `out`, run the steps in `options`, validate every artifact on
    `eval_path`, and return the manifest. `tolerances` gate the final artifact (default:
    `options.final_tolerances()`), each earlier step meets its own preset; nothing is written
    when a gate fails."""
    options = options or ExportOptions()
    options.check(provider)
    model, tokenizer, record = load_model_dir(model_dir)
    task = model_task(model)
    label_map = model_label_map(model)
    max_length = max_length or record.max_length or 128
    examples = read_examples(eval_path, columns, task=task)
    targets = label_targets(examples, label_map, task)
    dataset = EncodedDataset(tokenizer, examples, max_length, targets)
    validator = Validator(
        model, dataset, targets, task, label_map, provider, Path(model_dir), eval_path
    )
    final_gates = tolerances or options.final_tolerances()

    def gates(step: str, precision: str) -> Tolerances:
        return final_gates if step == options.last_step else Tolerances.preset(precision)

    steps: list[dict] = []
    runtime: dict = {}
    with (
        atomic_dir(out) as staging,
        tempfile.TemporaryDirectory(prefix="slimbert-export-") as scratch,
    ):
        exporter = _export_graph(
            model, tokenizer, Path(model_dir), staging, opset, options.attention
        )
        onnx_path = staging / ONNX_FILE
        if not onnx_path.is_file():
            raise SlimbertError(
                f"the exporter wrote no {ONNX_FILE} for {model_dir}; see its log above"
            )
        if not record.empty:
            write_record(staging, record)  # at the current schema version
        signature = checked_signature(onnx_path, model, tokenizer)
        validator.check("export", onnx_path, "fp32", gates("export", "fp32"))

        current = onnx_path
        if options.optimize is not None:
            fusion = options.optimize
            if isinstance(options.quantize, StaticQuantConfig) and fusion.attention:
                # QDQ has no Attention kernel: fused, the Q/K/V projections would stay float
                fusion = dataclasses.replace(fusion, attention=False)
            fused = Path(scratch) / "optimized.onnx"
            report = optimizing.optimize(current, fused, model.config, fusion)
            runtime = {fusion.provider: fusion.runtime_hints()} if fusion.runtime_hints() else {}
            validator.check("optimize", fused, "fused", gates("optimize", "fused"), runtime)
            steps.append(optimizing.describe(fusion, report))
            current = fused
        if options.quantize is not None:
            quantized = Path(scratch) / "int8.onnx"
            if isinstance(options.quantize, StaticQuantConfig):
                calibration = read_examples(
                    Path(options.quantize.calibration_file), columns, task=task
                )
                input_names = [i["name"] for i in signature["inputs"]]
                batches = quantizing.calibration_batches(
                    tokenizer, calibration, input_names, max_length, options.quantize
                )
                report = quantizing.quantize_static_model(
                    current, quantized, batches, options.quantize
                )
            else:
                report = quantizing.quantize_dynamic_model(current, quantized, options.quantize)
            qat = tuned_for(record, options.quantize)  # a qat student's int8 graph
            validator.check("quantize", quantized, "int8", gates("quantize", "int8"), runtime, qat)
            steps.append(quantizing.describe(options.quantize, report))
            current = quantized
        if options.precision == "fp16":
            half = Path(scratch) / "fp16.onnx"
            conversion = quantizing.convert_fp16(current, half)
            validator.check("fp16", half, "fp16", gates("fp16", "fp16"), runtime)
            steps.append(
                {
                    "step": "onnxruntime.transformers.float16",
                    "config": asdict(quantizing.Fp16Config()),
                    **conversion,
                }
            )
            current = half
        if current != onnx_path:
            shutil.copy2(current, onnx_path)

        manifest = build_manifest(
            staging,
            source=model_dir,
            exporter=exporter,
            precision=options.final_precision,
            steps=steps,
            runtime=runtime,
            task=task,
            label_map=label_map,
            max_length=max_length,
            signature=graph_signature(onnx_path),
            eval_path=eval_path,
            eval_sha256=examples.sha256,
            stages=validator.stages,
        )
        if options.triton is not None:
            smoke = triton.smoke_logits(
                onnx_path,
                tokenizer,
                examples,
                max_length,
                provider,
                runtime,
                options.final_precision,
                options.triton.smoke_examples,
            )
            triton.write_repository(options.triton, staging, manifest, smoke)
            manifest["triton"] = {
                "repository": str(options.triton.repo),
                **triton.describe(options.triton),
            }
        write_json_atomic(staging / MANIFEST_FILE, manifest)
        write_card(staging, record, manifest=manifest)
    return manifest
