"""Export a classifier to ONNX, optionally fuse, quantize or halve it, and prove every artifact
still matches PyTorch on real data.

The pipeline, each step validated on the whole eval file against the PyTorch model before the
next one runs (label agreement, Δmetric, max and mean |Δlogit|; NaN or Inf always fails):

    export (eager attention, fp32) ─▶ optimize (export/optimize.py: fused Attention, Gelu, ...)
        ─▶ quantize dynamic | static int8 (export/quantize.py, CPU)   or   fp16 (CUDA)
        ─▶ Triton model repository (export/triton.py), when asked

Only the last artifact is kept. The folder written loads as it is in ONNX Runtime, in optimum's
`ORTModelForSequenceClassification.from_pretrained(folder)`, and in `slimbert serve`:

    out/
      model.onnx            dynamic axes: batch_size, sequence_length
      config.json           with id2label
      tokenizer files
      slimbert.json         the model's own metadata (method, teacher, metric, ...)
      manifest.json         inputs, outputs, opset, exporter, precision, optimizations with fusion
                            counts, runtime hints, the provider validated on, validation figures of
                            every step, file sizes and hashes
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from slimbert.batches import EncodedDataset, label_targets, make_loader, model_inputs
from slimbert.data import Columns, read_examples
from slimbert.errors import SlimbertError
from slimbert.export.optimize import OptimizeConfig
from slimbert.export.quantize import DynamicQuantConfig, StaticQuantConfig
from slimbert.export.runtime import OnnxClassifier
from slimbert.export.triton import TritonConfig
from slimbert.files import atomic_dir, sha256_file, write_json_atomic
from slimbert.metrics import compute_metrics
from slimbert.models import load_model_dir, model_label_map, model_task, student_architecture
from slimbert.provenance import METADATA_FILE, library_versions

MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class Tolerances:
    """Gates an artifact must pass on the eval set, else nothing is written.

    max_abs_diff:   largest allowed |ONNX logit − PyTorch logit| (None: not gated, as for int8)
    min_agreement:  smallest allowed share of equal predicted labels, in percent
    max_f1_drop:    largest allowed drop of the main metric, in points
    """

    max_abs_diff: float | None = 1e-4
    min_agreement: float = 100.0
    max_f1_drop: float = 0.0

    @classmethod
    def preset(cls, precision: str) -> Tolerances:
        """Default gates per artifact: fp32 (plain export), fused (fp32 after the optimizer:
        kernels sum in another order), fp16, int8 (logits move; labels and F1 are what count)."""
        presets = {
            "fp32": cls(1e-4, 100.0, 0.0),
            "fused": cls(1e-3, 99.5, 0.1),
            "fp16": cls(5e-2, 99.0, 0.5),
            "int8": cls(None, 97.0, 1.0),
        }
        if precision not in presets:
            raise SlimbertError(
                f"no tolerance preset for {precision!r}; choose one of {', '.join(presets)}"
            )
        return presets[precision]

    def override(
        self,
        max_abs_diff: float | None = None,
        min_agreement: float | None = None,
        max_f1_drop: float | None = None,
    ) -> Tolerances:
        """These gates with any given value replacing the preset's."""
        return Tolerances(
            self.max_abs_diff if max_abs_diff is None else max_abs_diff,
            self.min_agreement if min_agreement is None else min_agreement,
            self.max_f1_drop if max_f1_drop is None else max_f1_drop,
        )


@dataclass
class Parity:
    examples: int
    max_abs_diff: float
    mean_abs_diff: float
    label_agreement: float
    metric_name: str
    torch_metric: float
    onnx_metric: float
    delta_metric: float
    provider: str

    def failures(self, tolerances: Tolerances) -> list[str]:
        problems = []
        if not np.isfinite(self.max_abs_diff) or not np.isfinite(self.onnx_metric):
            problems.append("the ONNX model produced NaN or Inf")
        if tolerances.max_abs_diff is not None and self.max_abs_diff > tolerances.max_abs_diff:
            problems.append(f"max |Δlogit| {self.max_abs_diff:.3g} > {tolerances.max_abs_diff:.3g}")
        if self.label_agreement < tolerances.min_agreement:
            problems.append(
                f"label agreement {self.label_agreement:.2f}% < {tolerances.min_agreement:.2f}%"
            )
        if -self.delta_metric > tolerances.max_f1_drop + 1e-9:
            problems.append(
                f"{self.metric_name} drop {-self.delta_metric:.2f} points > {tolerances.max_f1_drop:.2f}"
            )
        return problems


def torch_logits(model, dataset: EncodedDataset, batch_size: int = 32) -> np.ndarray:
    """PyTorch logits (N, C) over `dataset` in order, batches padded to their own longest row."""
    model.eval()
    chunks = []
    with torch.inference_mode():
        for batch in make_loader(dataset, batch_size, shuffle=False):
            chunks.append(model(**model_inputs(batch)).logits.float().numpy())
    return np.concatenate(chunks)


def onnx_logits(
    onnx_model: OnnxClassifier, dataset: EncodedDataset, batch_size: int = 32
) -> np.ndarray:
    """ONNX logits (N, C) over the same padded batches as `torch_logits`."""
    chunks = []
    for batch in make_loader(dataset, batch_size, shuffle=False):
        chunks.append(
            onnx_model({k: v.numpy() for k, v in model_inputs(batch).items()}).astype(np.float32)
        )
    return np.concatenate(chunks)


def compare(
    model,
    onnx_model: OnnxClassifier,
    dataset: EncodedDataset,
    targets: list,
    task: str,
    label_map,
    batch_size: int = 32,
    reference: np.ndarray | None = None,
) -> Parity:
    """Run PyTorch and ONNX on the same padded batches and compare logits, labels and metric.

    `reference`: PyTorch logits (N, C) already computed on `dataset` (then `model` is not run)."""
    torch_out = reference if reference is not None else torch_logits(model, dataset, batch_size)
    onnx_out = onnx_logits(onnx_model, dataset, batch_size)
    finite = bool(np.isfinite(onnx_out).all())
    diff = np.abs(torch_out - onnx_out)
    if task == "regression":
        agreement = 100.0
    else:
        agreement = float((torch_out.argmax(-1) == onnx_out.argmax(-1)).mean() * 100)
    torch_metric = compute_metrics(torch_out, targets, task, label_map)
    onnx_metric = compute_metrics(onnx_out, targets, task, label_map) if finite else None
    return Parity(
        examples=len(dataset),
        max_abs_diff=float(diff.max()) if finite else float("inf"),
        mean_abs_diff=float(diff.mean()) if finite else float("inf"),
        label_agreement=agreement,
        metric_name=torch_metric.name,
        torch_metric=torch_metric.main,
        onnx_metric=onnx_metric.main if onnx_metric else float("nan"),
        delta_metric=(onnx_metric.main - torch_metric.main) if onnx_metric else float("-inf"),
        provider=onnx_model.provider,
    )


def file_inventory(folder: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_FILE
    }


def graph_signature(onnx_path: Path) -> dict:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False)

    def describe(values):
        rows = []
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            rows.append(
                {
                    "name": value.name,
                    "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                    "shape": dims,
                }
            )
        return rows

    return {
        "inputs": describe(graph.graph.input),
        "outputs": describe(graph.graph.output),
        "opset": max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
    }


def graph_ops(onnx_path: Path) -> dict[str, int]:
    """Op counts of a graph, contrib ops named with their domain (com.microsoft.Attention)."""
    import collections

    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    counts = collections.Counter(
        f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
        for n in graph.node
    )
    return dict(sorted(counts.items()))


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
                f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)} (int8 comes from --quantize)"
            )
        if self.attention not in ("eager", "sdpa"):
            raise SlimbertError(
                f"attention implementation {self.attention!r}: choose eager or sdpa"
            )
        if self.precision == "fp16" and provider != "cuda":
            raise SlimbertError(
                "--precision fp16 needs --provider cuda: ONNX Runtime's CPU provider has no fp16 kernels for most "
                "ops and wraps them in Casts, slower than fp32; on the CPU use --quantize dynamic"
            )
        if self.quantize is not None and self.precision == "fp16":
            raise SlimbertError(
                "--quantize and --precision fp16 exclude each other; pick int8 (CPU) or fp16 (CUDA)"
            )
        if isinstance(self.quantize, DynamicQuantConfig) and provider != "cpu":
            raise SlimbertError(
                "--quantize dynamic runs on --provider cpu only: CUDA has no MatMulInteger/QAttention kernels, so "
                "ONNX Runtime would run them on the CPU between GPU ops; on CUDA use --precision fp16"
            )
        if isinstance(self.quantize, StaticQuantConfig):
            if provider != "cpu":
                raise SlimbertError(
                    "--quantize static runs on --provider cpu only (CUDA needs TensorRT for QDQ int8); on CUDA use --precision fp16"
                )
            if self.quantize.calibration_file is None:
                raise SlimbertError(
                    "--quantize static needs --calibration-data TRAIN_FILE: activation ranges come from training examples"
                )
            if not Path(self.quantize.calibration_file).is_file():
                raise SlimbertError(
                    f"--calibration-data {self.quantize.calibration_file}: no such file"
                )
        if self.optimize is not None and self.optimize.provider != provider:
            raise SlimbertError(
                f"--optimize for {self.optimize.provider} but --provider {provider}; optimize for the provider you validate on"
            )

    @property
    def final_precision(self) -> str:
        return "int8" if self.quantize is not None else self.precision

    def final_tolerances(self) -> Tolerances:
        """The preset gates of the artifact these options produce."""
        final = self.final_precision
        return Tolerances.preset(
            "fused" if final == "fp32" and self.optimize is not None else final
        )


@dataclass
class Stage:
    """One validated artifact of the pipeline."""

    name: str  # export, optimize, quantize, fp16
    precision: str  # fp32, fused, int8, fp16: the tolerance preset it is held to
    tolerances: Tolerances
    parity: Parity
    onnx_bytes: int

    def to_dict(self) -> dict:
        return {
            "step": self.name,
            "precision": self.precision,
            "onnx_bytes": self.onnx_bytes,
            "tolerances": asdict(self.tolerances),
            **asdict(self.parity),
        }


class _Validator:
    """Holds the PyTorch reference logits so every step is compared on the same batches."""

    def __init__(
        self,
        model,
        dataset: EncodedDataset,
        targets: list,
        task: str,
        label_map,
        provider: str,
        source: Path,
        eval_path: Path,
    ):
        self.model, self.dataset, self.targets, self.task, self.label_map = (
            model,
            dataset,
            targets,
            task,
            label_map,
        )
        self.provider, self.source, self.eval_path = provider, source, eval_path
        self.reference = torch_logits(model, dataset)  # (N, C)
        self.stages: list[Stage] = []

    def check(
        self,
        name: str,
        onnx_path: Path,
        precision: str,
        tolerances: Tolerances,
        runtime: dict | None = None,
    ) -> Stage:
        """Validate one artifact; raise SlimbertError naming the step and every failed gate."""
        hints = (runtime or {}).get(self.provider, {})
        session = OnnxClassifier(
            onnx_path, self.provider, disabled_optimizers=hints.get("disabled_optimizers", ())
        )
        parity = compare(
            self.model,
            session,
            self.dataset,
            self.targets,
            self.task,
            self.label_map,
            reference=self.reference,
        )
        problems = parity.failures(tolerances)
        if problems:
            raise SlimbertError(
                f"{self.source}: the {name} step's ONNX model fails validation on {self.eval_path}: "
                + "; ".join(problems)
                + " (nothing written; loosen the gate with --max-abs-diff/--min-agreement/--max-f1-drop only if that is acceptable)"
            )
        stage = Stage(name, precision, tolerances, parity, onnx_path.stat().st_size)
        self.stages.append(stage)
        return stage


def _export_graph(
    model, tokenizer, model_dir: Path, staging: Path, opset: int | None, attention: str
) -> str:
    """Trace `model` into staging/model.onnx (+ config, tokenizer); returns the exporter's name."""
    if student_architecture(model_dir) is not None:  # textcnn, bilstm, tree: not an HF model
        from slimbert.export.custom import export_student

        return export_student(model, tokenizer, Path(model_dir), staging, opset)
    from optimum.exporters.onnx import onnx_export_from_model

    traced = model
    if attention != "eager":
        from slimbert.models import load_classifier

        traced = load_classifier(model_dir, attn_implementation=attention).eval()
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


def _smoke(
    onnx_path: Path,
    tokenizer,
    examples,
    max_length: int,
    provider: str,
    runtime: dict,
    precision: str,
    count: int,
) -> dict:
    """A few eval texts and the logits this artifact gives them in one request (Triton smoke test)."""
    picked = examples.subset(range(min(count, len(examples))))
    pairs = picked.text_pairs if picked.is_pair else None
    encoded = tokenizer(
        picked.texts,
        pairs,
        truncation=True,
        max_length=max_length,
        padding=True,
        return_tensors="np",
    )
    session = OnnxClassifier(
        onnx_path,
        provider,
        disabled_optimizers=runtime.get(provider, {}).get("disabled_optimizers", ()),
    )
    logits = session({k: v for k, v in encoded.items()})
    tolerance = {"int8": 0.1, "fp16": 0.05}.get(
        precision, 1e-3
    )  # other CPUs, other int8/fp16 kernels
    return {
        "texts": picked.texts,
        "text_pairs": pairs,
        "logits": logits.astype(float).round(6).tolist(),
        "tolerance": tolerance,
    }


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
    model, tokenizer, metadata = load_model_dir(model_dir)
    task = model_task(model)
    label_map = model_label_map(model)
    max_length = max_length or metadata.get("data", {}).get("max_length") or 128
    examples = read_examples(eval_path, columns, task=task)
    targets = label_targets(examples, label_map, task)
    dataset = EncodedDataset(tokenizer, examples, max_length, targets)
    validator = _Validator(
        model, dataset, targets, task, label_map, provider, Path(model_dir), eval_path
    )
    final = options.final_precision
    final_gates = tolerances or options.final_tolerances()

    def gates(step_precision: str, last: bool) -> Tolerances:
        return final_gates if last else Tolerances.preset(step_precision)

    last_step = (
        "quantize"
        if options.quantize
        else "fp16"
        if options.precision == "fp16"
        else "optimize"
        if options.optimize
        else "export"
    )
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
        if (model_dir / METADATA_FILE).is_file():
            shutil.copy2(model_dir / METADATA_FILE, staging / METADATA_FILE)
        signature = graph_signature(onnx_path)
        graph_inputs = {i["name"] for i in signature["inputs"]}
        expected = set(tokenizer.model_input_names)
        if graph_inputs != expected:
            raise SlimbertError(
                f"exported inputs {sorted(graph_inputs)} differ from the tokenizer's {sorted(expected)}"
            )
        validator.check("export", onnx_path, "fp32", gates("fp32", last_step == "export"))

        current = onnx_path
        if options.optimize is not None:
            from slimbert.export import optimize as optimizing

            fusion = options.optimize
            if isinstance(options.quantize, StaticQuantConfig) and fusion.attention:
                # QDQ has no Attention kernel: fused, the Q/K/V projections would stay float
                fusion = dataclasses.replace(fusion, attention=False)
            fused = Path(scratch) / "optimized.onnx"
            report = optimizing.optimize(current, fused, model.config, fusion)
            runtime = {fusion.provider: fusion.runtime_hints()} if fusion.runtime_hints() else {}
            validator.check(
                "optimize", fused, "fused", gates("fused", last_step == "optimize"), runtime
            )
            steps.append(optimizing.describe(fusion, report))
            current = fused
        if options.quantize is not None:
            from slimbert.export import quantize as quantizing

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
            validator.check("quantize", quantized, "int8", gates("int8", True), runtime)
            steps.append(quantizing.describe(options.quantize, report))
            current = quantized
        if options.precision == "fp16":
            from slimbert.export import quantize as quantizing

            half = Path(scratch) / "fp16.onnx"
            conversion = quantizing.convert_fp16(current, half)
            validator.check("fp16", half, "fp16", gates("fp16", True), runtime)
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

        signature = graph_signature(onnx_path)
        ops = graph_ops(onnx_path)
        final_stage = validator.stages[-1]
        manifest = {
            "source": str(model_dir),
            "exporter": exporter,
            "precision": final,
            "optimizations": steps,
            "runtime": runtime,
            "task": task,
            "id2label": {str(k): v for k, v in label_map.id2label.items()},
            "max_length": max_length,
            **signature,
            "dynamic_axes": {
                i["name"]: [d for d in i["shape"] if isinstance(d, str)]
                for i in signature["inputs"]
            },
            "contrib_ops": sorted(
                {op.split(".")[-1] for op in ops if op.startswith("com.microsoft.")}
            ),
            "ops": ops,
            "validation": {
                "eval_file": str(eval_path),
                "eval_sha256": examples.sha256,
                "tolerances": asdict(final_stage.tolerances),
                **asdict(final_stage.parity),
            },
            "stages": [stage.to_dict() for stage in validator.stages],
            "versions": library_versions(),
            "files": file_inventory(staging),
        }
        if options.triton is not None:
            from slimbert.export import triton

            smoke = _smoke(
                onnx_path,
                tokenizer,
                examples,
                max_length,
                provider,
                runtime,
                final,
                options.triton.smoke_examples,
            )
            triton.write_repository(options.triton, staging, manifest, smoke)
            manifest["triton"] = {
                "repository": str(options.triton.repo),
                **triton.describe(options.triton),
            }
        write_json_atomic(staging / MANIFEST_FILE, manifest)
    return manifest
