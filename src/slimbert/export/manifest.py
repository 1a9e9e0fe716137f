"""manifest.json: what an export folder holds, how it was made and how well it matched PyTorch.

Its keys, in the order written:

    source, exporter, precision   where the graph came from and what it is now
    optimizations, runtime        each step after the export, and session hints per provider
    task, id2label, max_length    what a server needs to answer requests
    inputs, outputs, opset        the graph's own signature (`graph_signature`)
    dynamic_axes, contrib_ops, ops
    validation, stages            the final artifact's parity figures, and every step's
    versions, files               library versions; size and sha256 of every other file
    triton                        the Triton repository written beside it, if any (onnx.py)
"""

from __future__ import annotations

import collections
from dataclasses import asdict
from pathlib import Path

import onnx

from slimbert.data import LabelMap
from slimbert.export.validate import Stage
from slimbert.files import MANIFEST_FILE, ONNX_FILE, sha256_file
from slimbert.provenance import library_versions


def file_inventory(folder: Path) -> dict[str, dict]:
    """Size and sha256 of every file under `folder` but the manifest itself."""
    return {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_FILE
    }


def graph_signature(onnx_path: Path) -> dict:
    """The graph's inputs and outputs ({name, dtype, shape}, named axes as strings) and opset."""
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
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    counts = collections.Counter(
        f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
        for n in graph.node
    )
    return dict(sorted(counts.items()))


def build_manifest(
    folder: Path,
    *,
    source: Path,
    exporter: str,
    precision: str,
    steps: list[dict],
    runtime: dict,
    task: str,
    label_map: LabelMap,
    max_length: int,
    signature: dict,
    eval_path: Path,
    eval_sha256: str,
    stages: list[Stage],
) -> dict:
    """The manifest of the export in `folder` (its ONNX_FILE final), the last stage's parity as
    its validation figures."""
    ops = graph_ops(folder / ONNX_FILE)
    final = stages[-1]
    return {
        "source": str(source),
        "exporter": exporter,
        "precision": precision,
        "optimizations": steps,
        "runtime": runtime,
        "task": task,
        "id2label": {str(k): v for k, v in label_map.id2label.items()},
        "max_length": max_length,
        **signature,
        "dynamic_axes": {
            i["name"]: [d for d in i["shape"] if isinstance(d, str)] for i in signature["inputs"]
        },
        "contrib_ops": sorted({op.split(".")[-1] for op in ops if op.startswith("com.microsoft.")}),
        "ops": ops,
        "validation": {
            "eval_file": str(eval_path),
            "eval_sha256": eval_sha256,
            "tolerances": asdict(final.tolerances),
            "reference": final.reference,
            **asdict(final.parity),
        },
        "stages": [stage.to_dict() for stage in stages],
        "versions": library_versions(),
        "files": file_inventory(folder),
    }
