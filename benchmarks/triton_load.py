"""Triton Inference Server and `slimbert serve` under one load: one client, one ladder, one run.

The same export is served twice at once, on 127.0.0.1:
  - by `slimbert serve EXPORT` (its dynamic batcher: --max-batch-size, --max-wait-ms), and
  - by a real tritonserver (the nvidia-pytriton wheel's, started from --env by
    slimbert.serve.triton_server) on the repository `slimbert export --triton --triton-backend
    python` wrote for that export: tokenizer and ONNX Runtime each in Triton's Python backend,
    chained by the ensemble, with Triton's dynamic batcher.
One client drives both: benchmarks/serve_load.py's keep-alive HTTP/1.1 client on asyncio streams,
closed-loop (each client sends its next request when the last is answered), one text per request
in the Open Inference Protocol's JSON (/v2/models/NAME/infer, each server's own input names),
asking for the label (slimbert: its `label` output; Triton: the classification extension on
`logits`, labels from the ensemble's labels.txt).

  1. both servers up; every eval row once through each at 32 clients: the labels must agree
     with each other (and the count of rows where they differ is recorded);
  2. for each client count of --concurrency: --warmup uncounted requests, then --requests (or
     --time-limit seconds) — slimbert serve, then Triton, at each level, so that drift in the
     machine hits both; requests/s, p50/p90/p99, errors, and the mean batch each server formed
     (slimbert: its batch-size histogram; Triton: the ONNX model's statistics extension).
Writes OUT/README.md and OUT/result.json, each with the command, git revision, date and machine.

perf_analyzer is not used: the tritonclient wheel carries no binary, and the `perf-analyzer`
package on the index (0.1.0) is an empty placeholder.

The committed result (benchmarks/results/triton/):

    slimbert export --model RUN --eval ../shared/data/glue/SST-2/dev.tsv --max-length 64 \\
        --optimize --quantize dynamic --out EXPORT --triton REPO --triton-backend python \\
        --triton-max-batch-size 32 --triton-queue-delay-us 2000
    python benchmarks/triton_load.py --export EXPORT --triton-repo REPO --env .venv-triton \\
        --eval ../shared/data/glue/SST-2/dev.tsv --concurrency 1,8,32,128,256 \\
        --requests 3000 --time-limit 60 --out benchmarks/results/triton
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
from serve_load import LoadConfig, ServerProcess, _drive, batch_totals, fetch

from slimbert.bench.environment import environment, machine_lines
from slimbert.bench.render import Table
from slimbert.data import read_examples
from slimbert.files import write_json_atomic, write_text_atomic
from slimbert.serve.triton_server import TritonServer

HOST = "127.0.0.1"


def v2_bodies(texts: list[str], pairs: list[str] | None, metadata: dict, output: dict) -> list:
    """One OIP JSON body per row, shaped as the server's metadata says (a batched Triton input
    is [-1, 1], slimbert's [-1]): one text per request."""
    names = [i["name"] for i in metadata["inputs"]]
    shape = [1 if d == -1 else d for d in metadata["inputs"][0]["shape"]]
    bodies = []
    for i, text in enumerate(texts):
        columns = [text] + ([pairs[i]] if pairs is not None else [])
        inputs = [
            {"name": name, "shape": shape, "datatype": "BYTES", "data": [value]}
            for name, value in zip(names, columns, strict=False)
        ]
        bodies.append(json.dumps({"inputs": inputs, "outputs": [output]}).encode())
    return bodies


def label_of(payload: bytes, server: str) -> str:
    outputs = {o["name"]: o for o in json.loads(payload)["outputs"]}
    if server == "slimbert":
        return outputs["label"]["data"][0]
    return next(iter(outputs.values()))["data"][0].split(":", 2)[2]  # "score:index:label"


def triton_batches(port: int, model: str) -> tuple[float, float]:
    """(executions, inferences) of `model` so far: Triton's statistics extension."""
    status, body = fetch(HOST, port, f"/v2/models/{model}/stats")
    stats = json.loads(body)["model_stats"][0]
    return float(stats["execution_count"]), float(stats["inference_count"])


def level(server: dict, bodies: list[bytes], clients: int, args) -> dict:
    """Warm up, then time one client count against one server; latencies in ms."""
    run = lambda count: asyncio.run(  # noqa: E731
        _drive(HOST, server["port"], bodies, clients, count, args.time_limit, False, server["path"])
    )
    run(max(args.warmup, clients))
    before = server["batches"]()
    result = run(args.requests)
    after = server["batches"]()
    latencies = np.asarray(result["latencies"]) * 1000
    p50, p90, p99 = (float(np.percentile(latencies, q)) for q in (50, 90, 99))
    batches = after[0] - before[0]
    return {
        "server": server["name"],
        "clients": clients,
        "answered": result["ok"],
        "errors": sum(result["errors"].values()),
        "errors_by_kind": result["errors"],
        "seconds": result["seconds"],
        "throughput_per_s": result["ok"] / result["seconds"],
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_batch_size": (after[1] - before[1]) / batches if batches else float("nan"),
        "stopped_by_time_limit": result["timed_out"],
    }


def answers(server: dict, bodies: list[bytes], time_limit: float) -> list[str]:
    """Every row once at 32 clients; the label each got."""
    result = asyncio.run(
        _drive(HOST, server["port"], bodies, 32, len(bodies), time_limit, True, server["path"])
    )
    return [label_of(result["answers"][i], server["name"]) for i in range(len(bodies))]


def run(args) -> dict:
    threads = args.threads or os.cpu_count() or 1
    env = environment(threads)
    env["command"] = "python " + shlex.join(sys.argv)
    examples = read_examples(args.eval, require_labels=False)
    texts = list(examples.texts)
    pairs = list(examples.text_pairs) if examples.is_pair else None
    serve_config = LoadConfig(
        export=args.export,
        eval_file=args.eval,
        out=args.out,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
    )
    slimbert = ServerProcess(serve_config, threads)
    triton = TritonServer(args.triton_repo, args.env)
    try:
        slimbert.wait_ready()
        triton.start()
        name = json.loads(fetch(HOST, slimbert.port, "/v1/model")[1])["name"]
        ensemble = json.loads((args.triton_repo / "labels.json").read_text())["model"]
        servers = []
        for server, port, model, output in (
            ("slimbert", slimbert.port, name, {"name": "label"}),
            (
                "triton",
                triton.http_port,
                ensemble,
                {"name": "logits", "parameters": {"classification": 1}},
            ),
        ):
            metadata = json.loads(fetch(HOST, port, f"/v2/models/{model}")[1])
            batches = (
                (lambda p=port: batch_totals(HOST, p))
                if server == "slimbert"
                else (lambda p=port, m=f"{ensemble}_onnx": triton_batches(p, m))
            )
            servers.append(
                {
                    "name": server,
                    "port": port,
                    "path": f"/v2/models/{model}/infer",
                    "bodies": v2_bodies(texts, pairs, metadata, output),
                    "batches": batches,
                }
            )
        print(f"predictions: {len(texts)} rows through each server ...", file=sys.stderr)
        labels = {s["name"]: answers(s, s["bodies"], args.time_limit) for s in servers}
        differ = sum(a != b for a, b in zip(labels["slimbert"], labels["triton"], strict=True))
        levels = []
        for clients in args.concurrency:
            for server in servers:
                row = level(server, server["bodies"], clients, args)
                print(
                    f"{server['name']:>8} {clients:>3} clients: {row['throughput_per_s']:.0f} "
                    f"req/s, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, errors "
                    f"{row['errors']}, mean batch {row['mean_batch_size']:.1f}",
                    file=sys.stderr,
                )
                levels.append(row)
    finally:
        slimbert.stop()
        triton.stop()
    return {
        "title": "Triton and slimbert serve under the same load",
        "environment": env,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": len(texts),
        "labels_differ": differ,
        "levels": levels,
    }


def markdown(result: dict) -> str:
    env, config = result["environment"], result["config"]
    headers = [
        "Clients",
        "Server",
        "Requests/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "Errors",
        "Mean batch",
        "Answered",
    ]
    cells = []
    for row in result["levels"]:
        cells.append(
            [
                str(c)
                for c in [
                    row["clients"],
                    row["server"],
                    f"{row['throughput_per_s']:.0f}",
                    f"{row['p50_ms']:.2f}",
                    f"{row['p90_ms']:.2f}",
                    f"{row['p99_ms']:.2f}",
                    row["errors"],
                    f"{row['mean_batch_size']:.1f}",
                    f"{row['answered']}{' (time limit)' if row['stopped_by_time_limit'] else ''}",
                ]
            ]
        )
    table = Table(None, headers, cells)
    lines = [
        f"# {result['title']}",
        "",
        *machine_lines(env),
        "",
        f"Export: `{config['export']}`; Triton repository: `{config['triton_repo']}` (Python "
        "backend: tokenizer → ONNX Runtime, ensemble); slimbert serve with --max-batch-size "
        f"{config['max_batch_size']} --max-wait-ms {config['max_wait_ms']}. One text per "
        "request, OIP v2 JSON, asking for the label; the same client for both.",
        "",
        f"Labels: {result['rows']} eval rows through each server; they differ on "
        f"{result['labels_differ']}.",
        "",
        table.markdown(),
        "",
        "perf_analyzer: not available here (the tritonclient wheel has no binary; the "
        "`perf-analyzer` package on the index is an empty placeholder).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="slimbert export folder")
    parser.add_argument("--triton-repo", type=Path, required=True, help="its --triton repository")
    parser.add_argument("--env", type=Path, default=Path(".venv-triton"))
    parser.add_argument("--eval", type=Path, required=True)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8, 32, 128, 256]
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
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
