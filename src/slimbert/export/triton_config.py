"""config.pbtxt for the three models of a Triton repository, written from the ONNX graph's own
signature, and a reader for what is written here.

    <name>_onnx        backend onnxruntime (or python: model.py runs the graph with ONNX Runtime,
                       for servers without the onnxruntime backend): the graph's inputs and
                       outputs, the instance group and, when every tensor has a named batch axis,
                       dynamic batching
    <name>_tokenizer   backend python: TEXT [, TEXT_PAIR] (BYTES) in, the graph's inputs out
    <name>             platform ensemble: text → tokenizer → ONNX model → logits

With batching, the leading (batch) axis belongs to Triton and is left out of `dims`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from slimbert.errors import SlimbertError

TRITON_TYPES = {
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bool": "TYPE_BOOL",
    "object": "TYPE_STRING",
}
TEXT_INPUT = "TEXT"
TEXT_PAIR_INPUT = "TEXT_PAIR"
PADDINGS = ("longest", "max_length")
# What runs the ONNX graph: Triton's onnxruntime backend (what the NGC containers ship), or the
# Python backend with onnxruntime inside it (every tritonserver build has it, the pip one too)
BACKENDS = ("onnxruntime", "python")
LABELS_FILE = "labels.txt"


@dataclass(frozen=True)
class TritonConfig:
    """A Triton model repository for one exported classifier.

    repo:           folder to write (replaced only when complete)
    name:           ensemble name clients call; the parts are <name>_tokenizer and <name>_onnx
    kind:           "cpu" or "gpu": instance_group kind of the ONNX model
    backend:        "onnxruntime" or "python": what runs the graph (see BACKENDS)
    instances:      model instances (each its own ONNX Runtime session)
    max_batch_size: largest batch Triton forms (0 turns batching off)
    max_queue_delay_us: how long the dynamic batcher waits to fill a batch
    padding:        "longest" (per request) or "max_length" (every request the same shape)
    smoke_examples: eval texts written to smoke.json with their expected logits
    deploy:         also write REPO-deploy/ (Dockerfile, InferenceService, Deployment + Service)
    image:          the image REPO-deploy/'s manifests run (default slimbert-triton-<name>:latest)
    storage_uri:    where the cluster reads the repository (default pvc://slimbert-models/<repo>)
    """

    repo: Path
    name: str = "slimbert"
    kind: str = "cpu"
    backend: str = "onnxruntime"
    instances: int = 1
    max_batch_size: int = 32
    max_queue_delay_us: int = 500
    padding: str = "longest"
    smoke_examples: int = 8
    deploy: bool = False
    image: str | None = None
    storage_uri: str | None = None

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", self.name):
            raise SlimbertError(f"--triton-name {self.name!r}: use letters, digits, _ and - only")
        if self.kind not in ("cpu", "gpu"):
            raise SlimbertError(f"Triton instance kind {self.kind!r}: choose cpu or gpu")
        if self.backend not in BACKENDS:
            raise SlimbertError(
                f"--triton-backend {self.backend!r}: choose one of {', '.join(BACKENDS)}"
            )
        if self.padding not in PADDINGS:
            raise SlimbertError(
                f"Triton padding {self.padding!r}: choose one of {', '.join(PADDINGS)}"
            )
        if self.max_batch_size < 0 or self.instances < 1:
            raise SlimbertError("--triton-max-batch-size must be ≥ 0 and --triton-instances ≥ 1")
        if self.max_queue_delay_us < 0:
            raise SlimbertError("--triton-queue-delay-us must be ≥ 0")


def _quote(value: str) -> str:
    return json.dumps(value)


def _tensor_block(rows: list[dict]) -> str:
    """Rows of {"name", "data_type", "dims"} and optional "extra" fields, as a pbtxt list."""
    parts = []
    for row in rows:
        extra = "".join(f"\n    {k}: {v}" for k, v in row.get("extra", {}).items())
        dims = ", ".join(str(d) for d in row["dims"])
        parts.append(
            f"  {{\n    name: {_quote(row['name'])}\n    data_type: {row['data_type']}\n"
            f"    dims: [ {dims} ]{extra}\n  }}"
        )
    return "[\n" + ",\n".join(parts) + "\n]"


def _triton_type(dtype: str) -> str:
    if dtype not in TRITON_TYPES:
        raise SlimbertError(
            f"graph tensor type {dtype} has no Triton type; export in fp32, fp16 or int8"
        )
    return TRITON_TYPES[dtype]


def tensor_specs(rows: list[dict], batched: bool) -> list[dict]:
    """Triton input/output entries from graph_signature() rows; with batching, the leading
    (batch) axis is Triton's and is left out of dims; named or unknown axes become -1."""
    specs = []
    for row in rows:
        shape = row["shape"][1:] if batched else row["shape"]
        dims = [d if isinstance(d, int) and d > 0 else -1 for d in shape]
        specs.append({"name": row["name"], "data_type": _triton_type(row["dtype"]), "dims": dims})
    return specs


def batchable(signature: dict) -> bool:
    """Every input and output has a named (dynamic) leading axis."""
    return all(
        r["shape"] and isinstance(r["shape"][0], str)
        for r in signature["inputs"] + signature["outputs"]
    )


def onnx_config(
    name: str, signature: dict, config: TritonConfig, parameters: dict[str, str] | None = None
) -> str:
    """config.pbtxt of the ONNX model, from the graph's actual signature; `parameters` reach the
    Python backend's model.py (the onnxruntime backend takes none from here)."""
    batched = config.max_batch_size > 0 and batchable(signature)
    kind = "KIND_GPU" if config.kind == "gpu" else "KIND_CPU"
    lines = [
        f"name: {_quote(name)}",
        f"backend: {_quote(config.backend)}",
        f"max_batch_size: {config.max_batch_size if batched else 0}",
        f"input {_tensor_block(tensor_specs(signature['inputs'], batched))}",
        f"output {_tensor_block(tensor_specs(signature['outputs'], batched))}",
        f"instance_group [\n  {{\n    count: {config.instances}\n    kind: {kind}\n  }}\n]",
    ]
    if batched:
        lines.append(
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {config.max_queue_delay_us}\n}}"
        )
    if config.backend == "python" and parameters:
        lines.append(_parameters(parameters))
    return "\n".join(lines) + "\n"


def _parameters(values: dict[str, str]) -> str:
    return "\n".join(
        f"parameters {{\n  key: {_quote(k)}\n  value: {{ string_value: {_quote(v)} }}\n}}"
        for k, v in values.items()
    )


def tokenizer_config(
    name: str,
    text_inputs: list[str],
    signature: dict,
    config: TritonConfig,
    max_length: int,
    batched: bool,
) -> str:
    """config.pbtxt of the Python-backend tokenizer: text in, the ONNX graph's inputs out."""
    inputs = [
        {"name": t, "data_type": "TYPE_STRING", "dims": [1] if batched else [-1]}
        for t in text_inputs
    ]
    outputs = tensor_specs(signature["inputs"], batched)
    lines = [
        f"name: {_quote(name)}",
        'backend: "python"',
        f"max_batch_size: {config.max_batch_size if batched else 0}",
        f"input {_tensor_block(inputs)}",
        f"output {_tensor_block(outputs)}",
        f"instance_group [\n  {{\n    count: {config.instances}\n    kind: KIND_CPU\n  }}\n]",
        _parameters({"max_length": str(max_length), "padding": config.padding}),
    ]
    return "\n".join(lines) + "\n"


def ensemble_config(
    name: str,
    tokenizer_name: str,
    onnx_name: str,
    text_inputs: list[str],
    signature: dict,
    config: TritonConfig,
    batched: bool,
    labelled: bool = True,
) -> str:
    """config.pbtxt of the ensemble: raw text → tokenizer → ONNX model → logits; `labelled`
    (a classifier) names LABELS_FILE on the output."""
    inputs = [
        {"name": t, "data_type": "TYPE_STRING", "dims": [1] if batched else [-1]}
        for t in text_inputs
    ]
    # Triton's classification extension: a request that asks an output for its top k classes
    # gets "score:index:label" strings, the labels read from this file beside the config
    outputs = [
        {**spec, "extra": {"label_filename": _quote(LABELS_FILE)}} if labelled else spec
        for spec in tensor_specs(signature["outputs"], batched)
    ]

    def maps(kind: str, names: list[str]) -> str:
        return "\n".join(
            f"      {kind} {{\n        key: {_quote(n)}\n        value: {_quote(n)}\n      }}"
            for n in names
        )

    graph_inputs = [r["name"] for r in signature["inputs"]]
    graph_outputs = [r["name"] for r in signature["outputs"]]

    def step(model: str, inputs: list[str], outputs: list[str]) -> str:
        return (
            f"    {{\n      model_name: {_quote(model)}\n      model_version: -1\n"
            f"{maps('input_map', inputs)}\n{maps('output_map', outputs)}\n    }}"
        )

    steps = [
        step(tokenizer_name, text_inputs, graph_inputs),
        step(onnx_name, graph_inputs, graph_outputs),
    ]
    lines = [
        f"name: {_quote(name)}",
        'platform: "ensemble"',
        f"max_batch_size: {config.max_batch_size if batched else 0}",
        f"input {_tensor_block(inputs)}",
        f"output {_tensor_block(outputs)}",
        "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}",
    ]
    return "\n".join(lines) + "\n"


def read_config(path: Path) -> dict:
    """The name, max_batch_size, inputs and outputs (name, data_type, dims) of a config.pbtxt
    written here: a small reader for the subset this module writes."""
    text = Path(path).read_text()
    header = text.split("\ninput ")[0]
    result = {
        "name": json.loads(re.search(r'^name: (".*")$', header, re.M).group(1)),
        "max_batch_size": int(re.search(r"^max_batch_size: (\d+)$", header, re.M).group(1)),
    }
    for section in ("input", "output"):
        block = re.search(rf"^{section} \[\n(.*?)\n\]$", text, re.M | re.S).group(1)
        result[section] = [
            {
                "name": json.loads(m.group(1)),
                "data_type": m.group(2),
                "dims": [int(d) for d in m.group(3).split(",")],
            }
            for m in re.finditer(
                r'name: (".*?")\n\s+data_type: (\w+)\n\s+dims: \[ ([-\d, ]+) \]', block
            )
        ]
    return result
