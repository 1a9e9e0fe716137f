"""A Triton Inference Server model repository for an exported classifier: clients send raw text.

    REPO/
      README.md                  how to serve it and smoke-test it
      client.py                  stdlib-only client (KServe v2 HTTP/JSON); --smoke checks answers
      smoke.json                 a few eval texts and the logits the validated ONNX model gave them
      labels.json                class id → label
      <name>/                    ensemble: TEXT [, TEXT_PAIR] (BYTES) → logits (FP32)
        config.pbtxt
        1/                       (empty: Triton wants a version folder for ensembles too)
      <name>_tokenizer/          Python backend: tokenizers' Rust tokenizer, no transformers needed
        config.pbtxt
        1/model.py
        1/tokenizer.json
      <name>_onnx/               onnxruntime backend
        config.pbtxt             generated from the graph's own inputs and outputs
        1/model.onnx

Each client request is tokenised on its own and padded to its longest text (`padding: longest`
in the tokenizer's parameters); Triton's dynamic batcher only merges requests of the same
shape, so set `padding` to `max_length` to let it merge every request, at the cost of padded
compute.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from slimbert.errors import SlimbertError
from slimbert.files import atomic_dir, write_json_atomic, write_text_atomic

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


@dataclass(frozen=True)
class TritonConfig:
    """A Triton model repository for one exported classifier.

    repo:           folder to write (replaced only when complete)
    name:           ensemble name clients call; the parts are <name>_tokenizer and <name>_onnx
    kind:           "cpu" or "gpu": instance_group kind of the ONNX model
    instances:      model instances (each its own ONNX Runtime session)
    max_batch_size: largest batch Triton forms (0 turns batching off)
    max_queue_delay_us: how long the dynamic batcher waits to fill a batch
    padding:        "longest" (per request) or "max_length" (every request the same shape)
    smoke_examples: eval texts written to smoke.json with their expected logits
    """

    repo: Path
    name: str = "slimbert"
    kind: str = "cpu"
    instances: int = 1
    max_batch_size: int = 32
    max_queue_delay_us: int = 500
    padding: str = "longest"
    smoke_examples: int = 8

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", self.name):
            raise SlimbertError(f"--triton-name {self.name!r}: use letters, digits, _ and - only")
        if self.kind not in ("cpu", "gpu"):
            raise SlimbertError(f"Triton instance kind {self.kind!r}: choose cpu or gpu")
        if self.padding not in PADDINGS:
            raise SlimbertError(
                f"Triton padding {self.padding!r}: choose one of {', '.join(PADDINGS)}"
            )
        if self.max_batch_size < 0 or self.instances < 1:
            raise SlimbertError("--triton-max-batch-size must be ≥ 0 and instances ≥ 1")


def _quote(value: str) -> str:
    return json.dumps(value)


def _tensor_block(rows: list[dict]) -> str:
    parts = []
    for row in rows:
        extra = "".join(f"\n    {k}: {v}" for k, v in row.get("extra", {}).items())
        dims = ", ".join(str(d) for d in row["dims"])
        parts.append(
            f"  {{\n    name: {_quote(row['name'])}\n    data_type: {row['data_type']}\n    dims: [ {dims} ]{extra}\n  }}"
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


def _batchable(signature: dict) -> bool:
    """Every input and output has a named (dynamic) leading axis."""
    return all(
        r["shape"] and isinstance(r["shape"][0], str)
        for r in signature["inputs"] + signature["outputs"]
    )


def onnx_config(name: str, signature: dict, config: TritonConfig) -> str:
    """config.pbtxt of the ONNX model, from the graph's actual signature."""
    batched = config.max_batch_size > 0 and _batchable(signature)
    lines = [
        f"name: {_quote(name)}",
        'backend: "onnxruntime"',
        f"max_batch_size: {config.max_batch_size if batched else 0}",
        f"input {_tensor_block(tensor_specs(signature['inputs'], batched))}",
        f"output {_tensor_block(tensor_specs(signature['outputs'], batched))}",
        f"instance_group [\n  {{\n    count: {config.instances}\n    kind: {'KIND_GPU' if config.kind == 'gpu' else 'KIND_CPU'}\n  }}\n]",
    ]
    if batched:
        lines.append(
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {config.max_queue_delay_us}\n}}"
        )
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
        "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]",
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
) -> str:
    """config.pbtxt of the ensemble: raw text → tokenizer → ONNX model → logits."""
    inputs = [
        {"name": t, "data_type": "TYPE_STRING", "dims": [1] if batched else [-1]}
        for t in text_inputs
    ]
    outputs = tensor_specs(signature["outputs"], batched)

    def maps(kind: str, names: list[str]) -> str:
        return "\n".join(
            f"      {kind} {{\n        key: {_quote(n)}\n        value: {_quote(n)}\n      }}"
            for n in names
        )

    graph_inputs = [r["name"] for r in signature["inputs"]]
    graph_outputs = [r["name"] for r in signature["outputs"]]
    steps = [
        f"    {{\n      model_name: {_quote(tokenizer_name)}\n      model_version: -1\n{maps('input_map', text_inputs)}\n{maps('output_map', graph_inputs)}\n    }}",
        f"    {{\n      model_name: {_quote(onnx_name)}\n      model_version: -1\n{maps('input_map', graph_inputs)}\n{maps('output_map', graph_outputs)}\n    }}",
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
    """The name, max_batch_size, inputs and outputs of a config.pbtxt written here (name, data_type, dims).

    A small reader for the subset this module writes, used by tests and `check_repository`."""
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


MODEL_PY = '''"""Triton Python backend: raw text in, the ONNX classifier's token tensors out.

Generated by slimbert. Needs `tokenizers` and `numpy` in the Python backend's environment
(`pip install tokenizers numpy`). The tokenizer is the one the model was trained and exported
with (tokenizer.json beside this file); its output matches `transformers`' fast tokenizer.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_length = int(parameters["max_length"])
        self.padding = parameters.get("padding", "longest")
        self.text_inputs = [i["name"] for i in config["input"]]
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]]
        here = os.path.dirname(os.path.abspath(__file__))
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_length)
        pad_id = self.tokenizer.padding["pad_id"] if self.tokenizer.padding else 0
        pad_token = self.tokenizer.padding["pad_token"] if self.tokenizer.padding else "[PAD]"
        length = self.max_length if self.padding == "max_length" else None
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token, length=length)

    def _texts(self, request, name):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return None
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in tensor.as_numpy().reshape(-1)]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                texts = self._texts(request, self.text_inputs[0])
                if len(self.text_inputs) > 1:
                    pairs = self._texts(request, self.text_inputs[1])
                    encodings = self.tokenizer.encode_batch(list(zip(texts, pairs)))
                else:
                    encodings = self.tokenizer.encode_batch(texts)
                fields = {
                    "input_ids": [e.ids for e in encodings],
                    "attention_mask": [e.attention_mask for e in encodings],
                    "token_type_ids": [e.type_ids for e in encodings],
                }
                tensors = [pb_utils.Tensor(name, np.asarray(fields[name], dtype=dtype)) for name, dtype in self.outputs]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # one bad request must not take the others down
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses
'''

CLIENT_PY = '''#!/usr/bin/env python3
"""Classify text through the Triton ensemble over HTTP (KServe v2 JSON); standard library only.

Generated by slimbert.
    python client.py "a gripping, funny film" "two hours I will not get back"
    python client.py --smoke          # send smoke.json's texts; exit 1 if any answer differs
    python client.py --url http://host:8000 --model NAME ...
"""

import argparse
import json
import math
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = json.loads((HERE / "labels.json").read_text())


def build_request(texts, pairs=None):
    inputs = [{"name": "TEXT", "shape": [len(texts), 1], "datatype": "BYTES", "data": list(texts)}]
    if pairs is not None:
        inputs.append({"name": "TEXT_PAIR", "shape": [len(pairs), 1], "datatype": "BYTES", "data": list(pairs)})
    return {"inputs": inputs, "outputs": [{"name": SETTINGS["output"]}]}


def parse_response(payload):
    """Logits as a list of rows, from a v2 inference response."""
    output = next(o for o in payload["outputs"] if o["name"] == SETTINGS["output"])
    width = output["shape"][-1] if len(output["shape"]) > 1 else 1
    data = output["data"]
    return [data[i : i + width] for i in range(0, len(data), width)]


def infer(url, model, texts, pairs=None, timeout=30.0):
    body = json.dumps(build_request(texts, pairs)).encode()
    request = urllib.request.Request(f"{url}/v2/models/{model}/infer", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return parse_response(json.loads(response.read()))


def describe(row):
    if len(row) == 1:
        return f"score {row[0]:.4f}"
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    probs = [e / sum(exps) for e in exps]
    best = probs.index(max(probs))
    return f"{SETTINGS['id2label'][str(best)]} ({probs[best]:.3f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*")
    parser.add_argument("--pair", action="append", help="second text of a pair task, once per text")
    parser.add_argument("--url", default="http://localhost:8000")
    parser.add_argument("--model", default=SETTINGS["model"])
    parser.add_argument("--smoke", action="store_true", help="check the server against smoke.json")
    args = parser.parse_args(argv)
    if args.smoke:
        smoke = json.loads((HERE / "smoke.json").read_text())
        got = infer(args.url, args.model, smoke["texts"], smoke.get("text_pairs"))
        worst = max(abs(a - b) for row, want in zip(got, smoke["logits"]) for a, b in zip(row, want))
        same = sum(row.index(max(row)) == want.index(max(want)) for row, want in zip(got, smoke["logits"]))
        print(f"{same}/{len(got)} labels as expected, max |logit difference| {worst:.2e}")
        return 0 if same == len(got) and worst <= smoke["tolerance"] else 1
    if not args.texts:
        parser.error("give texts to classify, or --smoke")
    for text, row in zip(args.texts, infer(args.url, args.model, args.texts, args.pair)):
        print(f"{describe(row)}\\t{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

README = """# Triton model repository for {source}

Generated by `slimbert export --triton`. Clients send raw text to the `{name}` ensemble:
`{name}_tokenizer` (Python backend) turns it into {graph_inputs}, and `{name}_onnx` (ONNX Runtime
backend, {kind}) returns `{output}` of shape (batch, {width}).

- ONNX graph: opset {opset}, precision {precision}{contrib}; validated with onnxruntime {ort_version} on
  the {provider} provider ({validation}). Opset {opset} needs ONNX Runtime {min_ort} or newer in
  Triton's onnxruntime backend (see the Triton release notes for the version each release ships).{hint}
- Batching: max_batch_size {max_batch_size}, dynamic batching with a {delay} µs queue delay. The
  tokenizer pads each request to its longest text (`padding` parameter in
  `{name}_tokenizer/config.pbtxt`; `max_length` pads to {max_length} so that every request can be batched).

## Serve

```
docker run --rm {gpus}-p 8000:8000 -p 8001:8001 -p 8002:8002 -v "$PWD/{repo_name}:/models" \\
  nvcr.io/nvidia/tritonserver:<YY.MM>-py3 \\
  bash -c "pip install tokenizers numpy && tritonserver --model-repository=/models"
```

Wait for `curl -sf localhost:8000/v2/health/ready`, then:

```
python {repo_name}/client.py --smoke                 # {smoke} eval texts against the validated logits
python {repo_name}/client.py "a gripping, funny film"
```

Metrics (Prometheus) are on port 8002. For more throughput raise `count` in the ONNX model's
`instance_group`, or run several servers behind a load balancer: the repository is read-only
and every server can mount the same copy.
"""


# The first ONNX Runtime release that implements each opset.
MIN_ORT_FOR_OPSET = {
    13: "1.7",
    14: "1.10",
    15: "1.11",
    16: "1.12",
    17: "1.13",
    18: "1.14",
    19: "1.15",
    20: "1.17",
    21: "1.18",
}


def _hint_note(manifest: dict) -> str:
    """The manifest's session hints that Triton's backend cannot apply, and what that costs."""
    disabled = [
        name
        for hints in (manifest.get("runtime") or {}).values()
        for name in hints.get("disabled_optimizers", [])
    ]
    if not disabled:
        return ""
    return (
        f"\n- slimbert runs this graph with ONNX Runtime's {', '.join(disabled)} turned off (faster on the CPU; see "
        "slimbert/export/optimize.py). Triton's onnxruntime backend cannot turn off single optimizers, so it re-fuses "
        "them: expect the CPU latency slimbert measured for the default session, not the hinted one."
    )


def write_repository(config: TritonConfig, export_dir: Path, manifest: dict, smoke: dict) -> Path:
    """Write the repository for the export in `export_dir` (model.onnx, tokenizer.json, manifest).

    `smoke` holds {"texts", "text_pairs" (or None), "logits", "tolerance"} from the validated model.
    """
    tokenizer_file = export_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise SlimbertError(
            f"--triton needs a fast tokenizer (tokenizer.json) in {export_dir}; save the model with a *TokenizerFast"
        )
    signature = {"inputs": manifest["inputs"], "outputs": manifest["outputs"]}
    graph_inputs = [r["name"] for r in signature["inputs"]]
    unknown = set(graph_inputs) - {"input_ids", "attention_mask", "token_type_ids"}
    if unknown:
        raise SlimbertError(
            f"--triton: the tokenizer model cannot produce graph inputs {sorted(unknown)}"
        )
    batched = config.max_batch_size > 0 and _batchable(signature)
    text_inputs = (
        [TEXT_INPUT, TEXT_PAIR_INPUT] if smoke.get("text_pairs") is not None else [TEXT_INPUT]
    )
    onnx_name, tokenizer_name = f"{config.name}_onnx", f"{config.name}_tokenizer"
    output = signature["outputs"][0]
    contrib = sorted(set(manifest.get("contrib_ops", [])))
    with atomic_dir(config.repo) as repo:
        (repo / config.name / "1").mkdir(parents=True)
        (repo / onnx_name / "1").mkdir(parents=True)
        (repo / tokenizer_name / "1").mkdir(parents=True)
        shutil.copy2(export_dir / "model.onnx", repo / onnx_name / "1" / "model.onnx")
        shutil.copy2(tokenizer_file, repo / tokenizer_name / "1" / "tokenizer.json")
        write_text_atomic(
            repo / onnx_name / "config.pbtxt", onnx_config(onnx_name, signature, config)
        )
        write_text_atomic(
            repo / tokenizer_name / "config.pbtxt",
            tokenizer_config(
                tokenizer_name, text_inputs, signature, config, manifest["max_length"], batched
            ),
        )
        write_text_atomic(repo / tokenizer_name / "1" / "model.py", MODEL_PY)
        write_text_atomic(
            repo / config.name / "config.pbtxt",
            ensemble_config(
                config.name, tokenizer_name, onnx_name, text_inputs, signature, config, batched
            ),
        )
        write_text_atomic(repo / "client.py", CLIENT_PY)
        (repo / "client.py").chmod(0o755)
        write_json_atomic(
            repo / "labels.json",
            {"model": config.name, "output": output["name"], "id2label": manifest["id2label"]},
        )
        write_json_atomic(repo / "smoke.json", smoke)
        validation = manifest["validation"]
        write_text_atomic(
            repo / "README.md",
            README.format(
                source=manifest["source"],
                name=config.name,
                graph_inputs=", ".join(graph_inputs),
                kind="GPU" if config.kind == "gpu" else "CPU",
                output=output["name"],
                width=output["shape"][-1],
                opset=manifest["opset"],
                precision=manifest["precision"],
                contrib=f", contrib ops {', '.join(contrib)}" if contrib else "",
                ort_version=manifest["versions"].get("onnxruntime")
                or manifest["versions"].get("onnxruntime-gpu"),
                provider=validation["provider"],
                validation=f"label agreement {validation['label_agreement']:.2f}%, Δ{validation['metric_name']} {validation['delta_metric']:+.2f} on {validation['examples']} examples",
                max_batch_size=config.max_batch_size if batched else 0,
                delay=config.max_queue_delay_us,
                max_length=manifest["max_length"],
                gpus="--gpus all " if config.kind == "gpu" else "",
                min_ort=MIN_ORT_FOR_OPSET.get(manifest["opset"], "a release supporting it"),
                hint=_hint_note(manifest),
                repo_name=config.repo.name,
                smoke=len(smoke["texts"]),
            ),
        )
    return config.repo


def describe(config: TritonConfig) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
