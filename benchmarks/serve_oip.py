"""Open Inference Protocol (v2) against /v1/predict: the same labels for a whole dev set.

One run:
  1. starts `slimbert serve --model EXPORT` as a child process on 127.0.0.1 and waits for
     /v2/health/ready (through tritonclient);
  2. reads the model's v2 metadata (inputs, outputs, labels) with tritonclient;
  3. /v1/predict: every dev row, --request-size rows per request (slimbert's own JSON);
  4. /v2/models/NAME/infer through tritonclient's HTTP client: every dev row again, twice —
     --request-size rows per request in binary tensors (tritonclient's default), and one row
     per request in JSON;
  5. counts the rows whose v2 label equals the v1 label (and the gold label, for context), the
     largest score difference, and stops the server with SIGTERM.
Writes OUT/README.md and OUT/result.json, each starting with the command, git revision, date
and machine.

The committed result (benchmarks/results/serve-oip/):

    python benchmarks/serve_oip.py --export runs/mrpc/student-2L-e2-onnx \\
        --eval ../shared/data/glue/MRPC/dev.tsv --out benchmarks/results/serve-oip \\
        --about-export benchmarks/results/serve-oip/export.md

The export is any MRPC export folder; export.md says how the committed one was made.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from slimbert.bench.environment import environment, machine_lines
from slimbert.data import read_examples
from slimbert.files import write_text_atomic


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(export: Path, threads: int, max_batch_size: int) -> tuple[subprocess.Popen, int]:
    """`slimbert serve --model EXPORT` on a free port, ready to answer (≤ 180 s)."""
    import tritonclient.http as triton

    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="slimbert-serve-", suffix=".log", delete=False)
    command = [
        sys.executable,
        "-m",
        "slimbert",
        "serve",
        "--model",
        str(export),
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--max-batch-size",
        str(max_batch_size),
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    deadline = time.time() + 180
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}); see {log.name}")
        try:
            if client.is_server_ready():
                break
        except Exception:  # not listening yet
            pass
        if time.time() > deadline:
            server.kill()
            raise SystemExit(f"the server was not ready within 180 s; see {log.name}")
        time.sleep(0.2)
    client.close()
    return server, port


def v1_predictions(port: int, first: list[str], second: list[str] | None, size: int) -> list:
    """(label, scores) per row from /v1/predict."""
    answers = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        for start in range(0, len(first), size):
            chunk = slice(start, start + size)
            body = (
                {"texts": first[chunk]}
                if second is None
                else {"pairs": [list(p) for p in zip(first[chunk], second[chunk], strict=True)]}
            )
            response = client.post("/v1/predict", json=body)
            response.raise_for_status()
            answers += response.json()["predictions"]
    return answers


def v2_predictions(
    port: int,
    name: str,
    first: list[str],
    second: list[str] | None,
    size: int,
    binary: bool,
) -> tuple[list[str], np.ndarray]:
    """Labels and scores (N, C) from /v2/models/NAME/infer through tritonclient."""
    import tritonclient.http as triton

    def tensor(tensor_name: str, texts: list[str]):
        value = triton.InferInput(tensor_name, [len(texts)], "BYTES")
        value.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
        return value

    client = triton.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
    outputs = [
        triton.InferRequestedOutput("label", binary_data=binary),
        triton.InferRequestedOutput("scores", binary_data=binary),
    ]
    labels, scores = [], []
    for start in range(0, len(first), size):
        chunk = slice(start, start + size)
        inputs = [tensor("text", first[chunk])]
        if second is not None:
            inputs.append(tensor("text_pair", second[chunk]))
        result = client.infer(name, inputs, outputs=outputs)
        labels += [v.decode() if isinstance(v, bytes) else str(v) for v in result.as_numpy("label")]
        scores.append(result.as_numpy("scores"))
    client.close()
    return labels, np.concatenate(scores)


def run(args: argparse.Namespace) -> dict:
    import tritonclient.http as triton

    examples = read_examples(args.eval)
    first, second = examples.texts, examples.text_pairs
    gold = [str(label) for label in examples.labels]
    server, port = start_server(args.export, args.threads, args.max_batch_size)
    try:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        name = args.export.resolve().name
        metadata = client.get_model_metadata(name)
        client.close()
        labels = json.loads(metadata["parameters"]["labels"])
        began = time.perf_counter()
        v1 = v1_predictions(port, first, second, args.request_size)
        v1_s = time.perf_counter() - began
        v1_labels = [p["label"] for p in v1]
        v1_scores = np.array([[p["scores"][label] for label in labels] for p in v1])  # (N, C)
        passes = {}
        for title, size, binary in (
            (f"binary, {args.request_size} rows per request", args.request_size, True),
            ("JSON, 1 row per request", 1, False),
        ):
            began = time.perf_counter()
            v2_labels, v2_scores = v2_predictions(port, name, first, second, size, binary)
            passes[title] = {
                "rows": len(v2_labels),
                "same_label_as_v1": sum(a == b for a, b in zip(v2_labels, v1_labels, strict=True)),
                "max_abs_score_diff": float(np.abs(v2_scores - v1_scores).max()),
                "correct": sum(a == b for a, b in zip(v2_labels, gold, strict=True)),
                "seconds": round(time.perf_counter() - began, 2),
            }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "export": str(args.export),
        "eval": str(args.eval),
        "rows": len(first),
        "metadata": metadata,
        "v1": {
            "correct": sum(a == b for a, b in zip(v1_labels, gold, strict=True)),
            "label_counts": {label: v1_labels.count(label) for label in labels},
            "seconds": round(v1_s, 2),
        },
        "v2": passes,
    }


def markdown(result: dict, env: dict, notes: list[str]) -> str:
    rows = result["rows"]
    lines = [
        "# Open Inference Protocol (v2) vs /v1/predict",
        "",
        *[f"- {line}" for line in machine_lines(env)],
        f"- Export: `{result['export']}`; eval: `{result['eval']}` ({rows} rows)",
        "",
        "tritonclient's HTTP client against `slimbert serve`, every dev row; labels compared "
        "row by row with the server's own `/v1/predict` answer for the same row.",
        "",
        "| v2 pass | rows | same label as v1 | max abs score diff | accuracy | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for title, figures in result["v2"].items():
        lines.append(
            f"| {title} | {figures['rows']} | {figures['same_label_as_v1']}/{rows} | "
            f"{figures['max_abs_score_diff']:.1e} | {100 * figures['correct'] / rows:.2f}% | "
            f"{figures['seconds']} |"
        )
    lines += [
        "",
        f"/v1/predict: accuracy {100 * result['v1']['correct'] / rows:.2f}% "
        f"in {result['v1']['seconds']} s; labels it gave: "
        + ", ".join(f"{label} × {n}" for label, n in result["v1"]["label_counts"].items())
        + ".",
        "",
        *(["## The export", "", *notes, ""] if notes else []),
        "Model metadata (`GET /v2/models/NAME`):",
        "",
        "```json",
        json.dumps(result["metadata"], indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="export folder to serve")
    parser.add_argument("--eval", type=Path, required=True, help="dev file (GLUE TSV, ...)")
    parser.add_argument("--out", type=Path, required=True, help="result folder")
    parser.add_argument("--threads", type=int, default=1, help="server's ONNX Runtime threads")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--request-size", type=int, default=32, help="rows per batched request")
    parser.add_argument(
        "--about-export",
        type=Path,
        help="a Markdown file saying how the export was made; it becomes the README's "
        "'The export' section",
    )
    args = parser.parse_args()
    env = environment(args.threads)
    env["command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    result = run(args)
    result["environment"] = env
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "result.json", json.dumps(result, indent=2) + "\n")
    notes = args.about_export.read_text().strip().splitlines() if args.about_export else []
    write_text_atomic(args.out / "README.md", markdown(result, env, notes))
    for title, figures in result["v2"].items():
        print(f"{title}: {figures['same_label_as_v1']}/{result['rows']} labels equal to v1")
    print(f"written to {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
