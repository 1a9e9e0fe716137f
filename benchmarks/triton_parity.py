"""A whole dev file through a real tritonserver with tritonclient, over HTTP and gRPC, against
`slimbert serve`'s model and the PyTorch model: the labels, and the largest score difference.

One run: starts the nvidia-pytriton wheel's tritonserver from --env on the repository that
`slimbert export --triton --triton-backend python` wrote; sends every row of --eval through
tritonclient's HTTP client (requests of --batch rows) and its gRPC client (the same, run by the
server environment's Python: tritonclient[grpc] pins protobuf < 7, which slimbert's environment
is past); scores the same rows with the export folder as `slimbert serve` runs it
(`slimbert.load`, the same batches) and with the PyTorch model (transformers, one row at a
time, unpadded); counts the rows whose labels agree and the largest |Δ probability|. Writes
OUT/README.md and OUT/result.json with the command, revision, date and machine.

The committed result (benchmarks/results/triton/parity-fp32/): the base teacher's 6 × 384 SST-2
student exported in fp32 (dynamic int8 answers depend on what a row is batched with, so its
labels would measure the batching, not the server):

    slimbert export --model RUN --eval ../shared/data/glue/SST-2/dev.tsv --max-length 64 \\
        --optimize --out EXPORT --triton REPO --triton-backend python
    python benchmarks/triton_parity.py --export EXPORT --triton-repo REPO --model RUN \\
        --env .venv-triton --eval ../shared/data/glue/SST-2/dev.tsv \\
        --out benchmarks/results/triton/parity-fp32
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from slimbert.bench.environment import environment, machine_lines
from slimbert.data import read_examples
from slimbert.files import write_json_atomic, write_text_atomic
from slimbert.serve.triton_server import TritonServer

# run by the server environment's Python: JSON job on stdin, logits on stdout
GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
job = json.load(sys.stdin)
client = grpcclient.InferenceServerClient(job["url"])
logits = []
for start in range(0, len(job["texts"]), job["batch"]):
    inputs = []
    columns = [("TEXT", job["texts"])] + ([("TEXT_PAIR", job["pairs"])] if job["pairs"] else [])
    for name, values in columns:
        chunk = np.array([[v.encode()] for v in values[start:start + job["batch"]]], dtype=object)
        tensor = grpcclient.InferInput(name, list(chunk.shape), "BYTES")
        tensor.set_data_from_numpy(chunk)
        inputs.append(tensor)
    logits += client.infer(job["model"], inputs).as_numpy(job["output"]).tolist()
json.dump(logits, sys.stdout)
"""


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def http_logits(url: str, model: str, output: str, texts, pairs, batch: int) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    rows = []
    for start in range(0, len(texts), batch):
        columns = [("TEXT", texts)] + ([("TEXT_PAIR", pairs)] if pairs else [])
        inputs = []
        for name, values in columns:
            chunk = np.array([[v.encode()] for v in values[start : start + batch]], dtype=object)
            tensor = httpclient.InferInput(name, list(chunk.shape), "BYTES")
            tensor.set_data_from_numpy(chunk)
            inputs.append(tensor)
        rows.append(client.infer(model, inputs).as_numpy(output))
    return np.concatenate(rows)


def grpc_logits(server: TritonServer, model, output, texts, pairs, batch) -> np.ndarray:
    job = {"url": server.grpc_url, "model": model, "output": output, "texts": texts,
           "pairs": pairs, "batch": batch}  # fmt: skip
    python = str(server.files.env / "bin" / "python")
    done = subprocess.run([python, "-c", GRPC_CLIENT], input=json.dumps(job), text=True,
                          capture_output=True, timeout=1800)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"the gRPC client failed:\n{done.stderr[-2000:]}")
    return np.array(json.loads(done.stdout))


def pytorch_probabilities(model_dir: Path, texts, pairs, max_length: int) -> np.ndarray:
    import torch

    from slimbert.models import load_classifier, load_tokenizer

    tokenizer, model = load_tokenizer(model_dir), load_classifier(model_dir).eval()
    rows = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            encoded = tokenizer(text, pairs[i] if pairs else None, truncation=True,
                                max_length=max_length, return_tensors="pt")  # fmt: skip
            rows.append(torch.softmax(model(**encoded).logits[0].float(), -1).numpy())
    return np.stack(rows)


def run(args) -> dict:
    import slimbert

    env = environment(None)
    env["command"] = "python " + shlex.join(sys.argv)
    examples = read_examples(args.eval, require_labels=False)
    texts = list(examples.texts)
    pairs = list(examples.text_pairs) if examples.is_pair else None
    labels = json.loads((args.triton_repo / "labels.json").read_text())
    model, output = labels["model"], labels["output"]
    id2label = labels["id2label"]
    manifest = json.loads((args.export / "manifest.json").read_text())
    with TritonServer(args.triton_repo, args.env) as server:
        served = {
            "HTTP": http_logits(server.http_url, model, output, texts, pairs, args.batch),
            "gRPC": grpc_logits(server, model, output, texts, pairs, args.batch),
        }
    predictor = slimbert.load(args.export)
    inputs = list(zip(texts, pairs, strict=True)) if pairs else texts
    serve_rows = predictor(inputs, batch_size=args.batch)
    serve_labels = [p.label for p in serve_rows]
    serve_probs = np.array([[p.scores[id2label[str(i)]] for i in range(len(id2label))]
                            for p in serve_rows])  # fmt: skip
    torch_probs = pytorch_probabilities(args.model, texts, pairs, manifest["max_length"])
    torch_labels = [id2label[str(i)] for i in torch_probs.argmax(1)]
    result = {"rows": len(texts), "export": str(args.export), "precision": manifest["precision"]}
    for name, logits in served.items():
        probs = softmax(logits)
        got = [id2label[str(i)] for i in probs.argmax(1)]
        result[name] = {
            "labels_equal_serve": sum(a == b for a, b in zip(got, serve_labels, strict=True)),
            "labels_equal_pytorch": sum(a == b for a, b in zip(got, torch_labels, strict=True)),
            "max_abs_dprob_serve": float(np.abs(probs - serve_probs).max()),
            "max_abs_dprob_pytorch": float(np.abs(probs - torch_probs).max()),
        }
    result["serve_vs_pytorch_labels_equal"] = sum(
        a == b for a, b in zip(serve_labels, torch_labels, strict=True)
    )
    result["environment"] = env
    return result


def markdown(result: dict) -> str:
    lines = [
        "# A dev file through a real tritonserver, against slimbert serve and PyTorch", "",
        *machine_lines(result["environment"]), "",
        f"Export: `{result['export']}` ({result['precision']}); {result['rows']} rows, sent in "
        "requests of the --batch rows through tritonclient; slimbert serve's model in the same "
        "batches (`slimbert.load`); PyTorch one row at a time.", "",
        "| Client | Labels equal to slimbert serve's | Labels equal to PyTorch's | "
        "largest Δ probability vs serve | vs PyTorch |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for name in ("HTTP", "gRPC"):
        row = result[name]
        lines.append(
            f"| {name} | {row['labels_equal_serve']}/{result['rows']} | "
            f"{row['labels_equal_pytorch']}/{result['rows']} | "
            f"{row['max_abs_dprob_serve']:.2e} | {row['max_abs_dprob_pytorch']:.2e} |"
        )
    lines += ["", f"slimbert serve against PyTorch: {result['serve_vs_pytorch_labels_equal']}/"
              f"{result['rows']} labels equal."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="slimbert export folder")
    parser.add_argument("--triton-repo", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="the PyTorch model folder")
    parser.add_argument("--env", type=Path, default=Path(".venv-triton"))
    parser.add_argument("--eval", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "result.json", result)
    write_text_atomic(args.out / "README.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
