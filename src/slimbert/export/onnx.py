"""Export a classifier to ONNX with optimum's exporter and prove it matches PyTorch on real data.

The folder written loads as it is in ONNX Runtime, in optimum's
`ORTModelForSequenceClassification.from_pretrained(folder)`, and in `slimbert serve`:

    out/
      model.onnx            dynamic axes: batch_size, sequence_length
      config.json           with id2label
      tokenizer files
      slimbert.json         the model's own metadata (method, teacher, metric, ...)
      manifest.json         inputs, outputs, opset, parity figures, file sizes and hashes
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from slimbert.data import Columns, read_examples
from slimbert.errors import SlimbertError
from slimbert.evaluate import (
    EncodedDataset,
    compute_metrics,
    label_targets,
    make_loader,
    model_inputs,
)
from slimbert.export.runtime import OnnxClassifier
from slimbert.io import atomic_dir, sha256_file, write_json_atomic
from slimbert.models import (
    METADATA_FILE,
    library_versions,
    load_model_dir,
    model_label_map,
    model_task,
)

MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class Tolerances:
    """Gates a fresh export must pass on the eval set, else nothing is written.

    max_abs_diff:   largest allowed |ONNX logit − PyTorch logit|
    min_agreement:  smallest allowed share of equal predicted labels, in percent
    max_f1_drop:    largest allowed drop of the main metric, in points
    """

    max_abs_diff: float = 1e-4
    min_agreement: float = 100.0
    max_f1_drop: float = 0.0


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
        if not np.isfinite(self.max_abs_diff):
            problems.append("the ONNX model produced NaN or Inf")
        if self.max_abs_diff > tolerances.max_abs_diff:
            problems.append(f"max |Δlogit| {self.max_abs_diff:.3g} > {tolerances.max_abs_diff:.3g}")
        if self.label_agreement < tolerances.min_agreement:
            problems.append(f"label agreement {self.label_agreement:.2f}% < {tolerances.min_agreement:.2f}%")
        if -self.delta_metric > tolerances.max_f1_drop + 1e-9:
            problems.append(f"{self.metric_name} drop {-self.delta_metric:.2f} points > {tolerances.max_f1_drop:.2f}")
        return problems


def compare(model, onnx_model: OnnxClassifier, dataset: EncodedDataset, targets: list, task: str, label_map, batch_size: int = 32) -> Parity:
    """Run PyTorch and ONNX on the same padded batches and compare logits, labels and metric."""
    loader = make_loader(dataset, batch_size, shuffle=False)
    torch_chunks, onnx_chunks = [], []
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            inputs = model_inputs(batch)
            torch_chunks.append(model(**inputs).logits.float().numpy())
            onnx_chunks.append(onnx_model({k: v.numpy() for k, v in inputs.items()}).astype(np.float32))
    torch_logits = np.concatenate(torch_chunks)
    onnx_logits = np.concatenate(onnx_chunks)
    diff = np.abs(torch_logits - onnx_logits)
    finite = bool(np.isfinite(onnx_logits).all())
    if task == "regression":
        agreement = 100.0
    else:
        agreement = float((torch_logits.argmax(-1) == onnx_logits.argmax(-1)).mean() * 100)
    torch_metric = compute_metrics(torch_logits, targets, task, label_map)
    onnx_metric = compute_metrics(onnx_logits, targets, task, label_map) if finite else None
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
            rows.append({"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, "shape": dims})
        return rows

    return {
        "inputs": describe(graph.graph.input),
        "outputs": describe(graph.graph.output),
        "opset": max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
    }


def export(
    model_dir: Path,
    eval_path: Path,
    out: Path,
    columns: Columns = Columns(),
    max_length: int | None = None,
    tolerances: Tolerances = Tolerances(),
    opset: int | None = None,
    provider: str = "cpu",
) -> dict:
    """Export `model_dir` to `out`, validate it on `eval_path`, and return the manifest."""
    from optimum.exporters.onnx import main_export

    model, tokenizer, metadata = load_model_dir(model_dir)
    task = model_task(model)
    label_map = model_label_map(model)
    max_length = max_length or metadata.get("data", {}).get("max_length") or 128
    examples = read_examples(eval_path, columns, task=task)
    targets = label_targets(examples, label_map, task)
    dataset = EncodedDataset(tokenizer, examples, max_length, targets)

    with atomic_dir(out) as staging:
        main_export(
            str(model_dir),
            output=str(staging),
            task="text-classification",
            opset=opset,
            do_validation=False,
            local_files_only=True,
            trust_remote_code=False,
        )
        onnx_path = staging / ONNX_FILE
        if not onnx_path.is_file():
            raise SlimbertError(f"optimum wrote no {ONNX_FILE} for {model_dir}; see its log above")
        if (model_dir / METADATA_FILE).is_file():
            shutil.copy2(model_dir / METADATA_FILE, staging / METADATA_FILE)
        signature = graph_signature(onnx_path)
        graph_inputs = {i["name"] for i in signature["inputs"]}
        expected = set(tokenizer.model_input_names)
        if graph_inputs != expected:
            raise SlimbertError(f"exported inputs {sorted(graph_inputs)} differ from the tokenizer's {sorted(expected)}")

        parity = compare(model, OnnxClassifier(onnx_path, provider), dataset, targets, task, label_map)
        problems = parity.failures(tolerances)
        if problems:
            raise SlimbertError(f"{model_dir}: ONNX export fails validation on {eval_path}: " + "; ".join(problems) + " (nothing written)")
        manifest = {
            "source": str(model_dir),
            "exporter": "optimum.exporters.onnx.main_export",
            "precision": "fp32",
            "optimizations": [],
            "task": task,
            "id2label": {str(k): v for k, v in label_map.id2label.items()},
            "max_length": max_length,
            **signature,
            "dynamic_axes": {i["name"]: [d for d in i["shape"] if isinstance(d, str)] for i in signature["inputs"]},
            "validation": {"eval_file": str(eval_path), "eval_sha256": examples.sha256, "tolerances": asdict(tolerances), **asdict(parity)},
            "versions": library_versions(),
            "files": file_inventory(staging),
        }
        write_json_atomic(staging / MANIFEST_FILE, manifest)
    return manifest
