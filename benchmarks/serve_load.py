"""Load test of `slimbert serve` on loopback, beside the raw ONNX Runtime throughput of the \
same model.

One run, in this order:
  1. raw ONNX Runtime: the eval texts in consecutive batches of --max-batch-size, each padded to
     its own longest sequence, same threads as the server; examples per second of model time
     (tokenisation timed apart);
  2. starts `slimbert serve EXPORT` as a child process on 127.0.0.1 and waits for /readyz;
  3. predictions: every eval example once, as a single-item request at 32 clients (so batched
     with others and padded to their lengths), compared with offline predictions (transformers'
     tokenizer, OnnxClassifier at batch 1, unpadded);
  4. for each client count in --concurrency: closed-loop clients (each sends its next request
     when the last one is answered) over keep-alive connections; --warmup requests per level not
     counted; stops at --requests requests or --time-limit seconds, whichever comes first;
     p50/p90/p99 latency, throughput, errors by kind, and the mean batch size from /metrics;
  5. SIGTERM to the server, which must finish its lifespan shutdown (the batcher drained) and
     exit (uvicorn re-raises the SIGTERM it caught, so a clean exit reads -15);
  6. raw ONNX Runtime again, so the served figures sit between two raw ones (the higher raw
     figure is the one the served throughput is compared with).
Writes OUT (Markdown) and OUT with .json, each starting with the command, git revision, date
and machine. Every stage is bounded: at most (client counts + 3) × --time-limit seconds plus the
server's start-up (≤ 180 s) and shutdown (≤ 60 s).

The committed result (issue 6: 3-layer kd student, SST-2 dev, ≥ 10,000 requests per level):

    python benchmarks/serve_load.py --export runs/sst2/kd-3L-onnx \\
        --eval ../shared/data/glue/SST-2/dev.tsv --requests 10000 --concurrency 1,8,32 \\
        --time-limit 300 --out benchmarks/results/serve-load-sst2.md

(`slimbert export --model runs/sst2/kd-3L --eval ../shared/data/glue/SST-2/dev.tsv --out
runs/sst2/kd-3L-onnx` makes the export folder.) A quick check: --requests 300 --time-limit 30.

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams rather than httpx: client
and server share the machine's cores, and on the 2-core development machine httpx's
AsyncClient answered ~110 requests/s at 8 clients against a server the minimal client drove at
~1,100 requests/s, so httpx would have measured itself. It speaks only what this server sends
(Content-Length bodies) and counts anything else as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slimbert.bench.environment import environment, machine_lines
from slimbert.bench.render import Table
from slimbert.data import Columns, read_examples
from slimbert.errors import SlimbertError
from slimbert.export.runtime import OnnxClassifier
from slimbert.files import ONNX_FILE, write_json_atomic, write_text_atomic
from slimbert.serve.model import Item, ServedModel, softmax

THRESHOLDS = {"min_throughput_ratio": 0.70, "max_p99_over_p50": 3.0, "min_requests": 10_000}


@dataclass(frozen=True)
class LoadConfig:
    """export: export folder; eval_file: texts to send (labels not needed); requests: counted
    requests per client count; concurrency: client counts; time_limit: seconds per level (and per
    raw run); warmup: uncounted requests per level; threads: ONNX Runtime intra-op threads of
    server and raw runs; max_batch_size / max_wait_ms: the server's batching flags;
    check_predictions: compare every eval example with offline predictions."""

    export: Path
    eval_file: Path
    out: Path
    requests: int = 10_000
    concurrency: tuple[int, ...] = (1, 8, 32)
    time_limit: float = 300.0
    warmup: int = 50
    threads: int | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    provider: str = "cpu"
    check_predictions: bool = True
    columns: Columns = field(default_factory=Columns)
    graceful_timeout: float = 30.0


# ---------------------------------------------------------------------------------------------
# Raw ONNX Runtime


def raw_throughput(
    export: Path,
    items: list[Item],
    batch_size: int,
    threads: int,
    provider: str,
    limit: int,
    time_limit: float,
) -> dict:
    """Examples per second of ONNX Runtime alone over consecutive padded batches of `items`.

    Batches are tokenised up front, by the server's own tokeniser, and timed apart, so that
    `examples_per_s` is model time only; `with_tokenization_per_s` adds that time back in."""
    model = ServedModel(export, provider, threads)
    batches, tokenize_s = [], 0.0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        began = time.perf_counter()
        features, _ = model.encode(chunk)
        tokenize_s += time.perf_counter() - began
        batches.append((features, len(chunk)))
    for features, _ in batches[:3]:  # warm-up, not counted
        model.classifier(features)
    examples, model_s, batch_count = 0, 0.0, 0
    deadline = time.perf_counter() + time_limit
    while examples < limit and time.perf_counter() < deadline:
        features, size = batches[batch_count % len(batches)]
        began = time.perf_counter()
        model.classifier(features)
        model_s += time.perf_counter() - began
        examples += size
        batch_count += 1
    tokenize_per_example = tokenize_s / len(items)
    return {
        "examples": examples,
        "batches": batch_count,
        "batch_size": batch_size,
        "threads": threads,
        "model_seconds": model_s,
        "examples_per_s": examples / model_s if model_s else float("nan"),
        "tokenize_ms_per_example": tokenize_per_example * 1000,
        "with_tokenization_per_s": examples / (model_s + tokenize_per_example * examples)
        if model_s
        else float("nan"),
    }


# ---------------------------------------------------------------------------------------------
# A minimal keep-alive HTTP/1.1 client


class HttpError(Exception):
    """The server answered something this client does not read (no Content-Length, closed)."""


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            await self.close()
            raise HttpError("connection closed before a response") from None
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            await self.close()
            raise HttpError("response without Content-Length")
        payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


def encode_bodies(items: list[Item]) -> list[bytes]:
    """One single-item /v1/predict body per example."""
    if items[0].pair is not None:
        return [json.dumps({"pairs": [[i.text, i.pair]]}).encode() for i in items]
    return [json.dumps({"texts": [i.text]}).encode() for i in items]


async def _drive(
    host: str,
    port: int,
    bodies: list[bytes],
    clients: int,
    count: int,
    time_limit: float,
    keep: bool,
    path: str = "/v1/predict",
) -> dict:
    """`clients` closed-loop clients POST bodies[i % len] to `path` for i < count or until
    time_limit."""
    next_index = ok = 0
    latencies: list[float] = []
    errors: Counter = Counter()
    answers: dict[int, bytes] = {}
    deadline = time.perf_counter() + time_limit

    async def client() -> None:
        nonlocal next_index, ok
        connection = Connection(host, port)
        try:
            while next_index < count and time.perf_counter() < deadline:
                index = next_index
                next_index += 1
                began = time.perf_counter()
                try:
                    async with asyncio.timeout(60):
                        status, payload = await connection.request(
                            "POST", path, bodies[index % len(bodies)]
                        )
                except (OSError, HttpError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] += 1
                    await connection.close()
                    continue
                latencies.append(time.perf_counter() - began)
                if status != 200:
                    errors[f"http_{status}"] += 1
                    continue
                ok += 1
                if keep:
                    answers[index] = payload
        finally:
            await connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    return {
        "latencies": latencies,
        "ok": ok,
        "errors": dict(errors),
        "seconds": elapsed,
        "answers": answers,
        "timed_out": next_index < count,
    }


def fetch(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def batch_totals(host: str, port: int) -> tuple[float, float]:
    """(batches, items) so far, from the server's slimbert_batch_size histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    _, text = fetch(host, port, "/metrics")
    count = total = 0.0
    for family in text_string_to_metric_families(text.decode()):
        if family.name == "slimbert_batch_size":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    count = sample.value
                elif sample.name.endswith("_sum"):
                    total = sample.value
    return count, total


def measure_level(
    host: str, port: int, bodies: list[bytes], clients: int, config: LoadConfig
) -> dict:
    """Warm up, then time one client count; latencies in ms."""
    asyncio.run(
        _drive(
            host, port, bodies, clients, max(config.warmup, clients), config.time_limit, keep=False
        )
    )
    batches_before, items_before = batch_totals(host, port)
    result = asyncio.run(
        _drive(host, port, bodies, clients, config.requests, config.time_limit, keep=False)
    )
    batches_after, items_after = batch_totals(host, port)
    latencies = np.asarray(result["latencies"]) * 1000
    answered = len(latencies)
    p50, p90, p99 = (
        float(np.percentile(latencies, q)) if answered else float("nan") for q in (50, 90, 99)
    )
    batches = batches_after - batches_before
    return {
        "clients": clients,
        "sent": result["ok"] + sum(result["errors"].values()),
        "answered": result["ok"],
        "errors": sum(result["errors"].values()),
        "errors_by_kind": result["errors"],
        "seconds": result["seconds"],
        "throughput_per_s": result["ok"] / result["seconds"] if result["seconds"] else float("nan"),
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": float(latencies.mean()) if answered else float("nan"),
        "p99_over_p50": p99 / p50 if answered else float("nan"),
        "batches": batches,
        "mean_batch_size": (items_after - items_before) / batches if batches else float("nan"),
        "stopped_by_time_limit": result["timed_out"],
    }


def offline_probabilities(
    export: Path, items: list[Item], max_length: int, threads: int, provider: str
) -> np.ndarray:
    """(N, C) softmax of each example on its own (batch 1, unpadded), tokenised by transformers'
    AutoTokenizer as `slimbert export` and `bench` do: the offline reference, independent of the
    server's tokeniser set-up."""
    from slimbert.models import load_tokenizer

    tokenizer = load_tokenizer(export)
    session = OnnxClassifier(export / ONNX_FILE, provider, threads)
    rows = []
    for item in items:
        encoded = tokenizer(
            item.text, item.pair, truncation=True, max_length=max_length, return_tensors="np"
        )
        rows.append(softmax(session({k: np.asarray(v) for k, v in encoded.items()}))[0])
    return np.stack(rows)


def check_predictions(
    host: str,
    port: int,
    export: Path,
    items: list[Item],
    bodies: list[bytes],
    identity,
    threads: int,
    provider: str,
    time_limit: float,
) -> dict:
    """Served labels and scores against offline ones, every example once, sent at 32 clients so
    that each is batched with others and padded to their lengths."""
    served = asyncio.run(_drive(host, port, bodies, 32, len(bodies), time_limit, keep=True))
    expected = offline_probabilities(
        export, items, identity.max_length, threads, provider
    )  # (N, C)
    label_equal, compared, max_diff = 0, 0, 0.0
    for index, payload in sorted(served["answers"].items()):
        answer = json.loads(payload)["predictions"][0]
        scores = np.array([answer["scores"][label] for label in identity.labels])
        compared += 1
        label_equal += answer["label"] == identity.labels[int(expected[index].argmax())]
        max_diff = max(max_diff, float(np.abs(scores - expected[index]).max()))
    return {
        "examples": len(items),
        "compared": compared,
        "labels_equal": label_equal,
        "max_abs_score_diff": max_diff,
        "errors": served["errors"],
    }


# ---------------------------------------------------------------------------------------------
# The server as a child process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`slimbert serve` in a child process, logging to a temporary file."""

    def __init__(self, config: LoadConfig, threads: int):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(
            prefix="slimbert-serve-", suffix=".log", delete=False
        )
        command = [
            sys.executable,
            "-m",
            "slimbert",
            "serve",
            str(config.export),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--threads",
            str(threads),
            "--provider",
            config.provider,
            "--max-batch-size",
            str(config.max_batch_size),
            "--max-wait-ms",
            str(config.max_wait_ms),
            "--log-level",
            "info",
            "--graceful-timeout",
            str(config.graceful_timeout),
        ]
        self.command = command
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise SlimbertError(
                    f"the server exited with {self.process.returncode} before it was ready:\n"
                    f"{self.tail()}"
                )
            try:
                if fetch("127.0.0.1", self.port, "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise SlimbertError(f"the server was not ready within {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then the exit code (None if it had to be killed). uvicorn re-raises the
        SIGTERM it caught once it has shut down, so a clean exit reads -15, not 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode

    def shut_down_cleanly(self) -> bool:
        """Exited on the SIGTERM after uvicorn finished the lifespan shutdown (the batcher
        drained)."""
        return self.process.returncode in (
            0,
            -signal.SIGTERM,
        ) and "Application shutdown complete" in Path(self.log.name).read_text(errors="replace")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# The result file


def verdicts(result: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured, passed) for each of issue 6's targets."""
    rows = []
    raw = max(r["examples_per_s"] for r in result["raw"])
    top = max(result["levels"], key=lambda level: level["clients"]) if result["levels"] else None
    if top:
        ratio = top["throughput_per_s"] / raw
        rows.append(
            (
                f"served throughput at {top['clients']} clients "
                f"≥ {THRESHOLDS['min_throughput_ratio']:.0%} of raw ONNX Runtime",
                f"{top['throughput_per_s']:.0f} / {raw:.0f} = {ratio:.0%}",
                ratio >= THRESHOLDS["min_throughput_ratio"],
            )
        )
        rows.append(
            (
                f"p99 ≤ {THRESHOLDS['max_p99_over_p50']:.0f} × p50 at {top['clients']} clients",
                f"{top['p99_ms']:.1f} / {top['p50_ms']:.1f} ms = {top['p99_over_p50']:.2f}×",
                top["p99_over_p50"] <= THRESHOLDS["max_p99_over_p50"],
            )
        )
    total_errors = sum(level["errors"] for level in result["levels"])
    smallest = min((level["answered"] for level in result["levels"]), default=0)
    rows.append(
        (
            f"0 errors over ≥ {THRESHOLDS['min_requests']:,} requests per level",
            f"{total_errors} errors; fewest answered in a level: {smallest:,}",
            total_errors == 0 and smallest >= THRESHOLDS["min_requests"],
        )
    )
    predictions = result.get("predictions")
    if predictions:
        rows.append(
            (
                "served predictions equal offline on the whole eval file",
                f"{predictions['labels_equal']}/{predictions['examples']} labels, "
                f"max |Δscore| {predictions['max_abs_score_diff']:.1e}",
                predictions["labels_equal"] == predictions["examples"],
            )
        )
    clean = result["server_shutdown_clean"]
    rows.append(
        (
            "graceful shutdown on SIGTERM",
            f"exit code {result['server_exit_code']}, "
            + ("lifespan shutdown complete" if clean else "no clean shutdown in the log"),
            clean,
        )
    )
    return rows


def render_markdown(result: dict) -> str:
    env = result["environment"]
    config = result["config"]
    lines = [f"# Serving under load: {result['model']['name']}", ""]
    lines += [f"- {line}" for line in machine_lines(env)]
    lines += [
        f"- Model: {result['model']['name']} (sha256 {result['model']['sha256'][:16]}…, "
        f"{result['model']['task']}, max length {result['model']['max_length']})",
        f"- Eval file: {config['eval_file']} "
        f"({result['eval_examples']} examples, one per request, cycled)",
        f"- Server: `{' '.join(shlex.quote(a) for a in result['server_command'][2:])}` "
        "on loopback; client and server share the machine's cores",
        "",
    ]
    served = Table(
        "Served over HTTP (closed-loop clients, keep-alive)",
        [
            "Clients",
            "Requests",
            "Errors",
            "Seconds",
            "Req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99/p50",
            "Mean batch",
            "vs raw ORT",
        ],
        [
            [
                str(level["clients"]),
                f"{level['answered']:,}",
                str(level["errors"]),
                f"{level['seconds']:.1f}",
                f"{level['throughput_per_s']:.0f}",
                f"{level['p50_ms']:.2f}",
                f"{level['p90_ms']:.2f}",
                f"{level['p99_ms']:.2f}",
                f"{level['p99_over_p50']:.2f}",
                f"{level['mean_batch_size']:.1f}",
                format(
                    level["throughput_per_s"] / max(r["examples_per_s"] for r in result["raw"]),
                    ".0%",
                ),
            ]
            for level in result["levels"]
        ],
    )
    raw = Table(
        "Raw ONNX Runtime, same model and threads",
        [
            "When",
            "Examples",
            "Batch",
            "Threads",
            "Model s",
            "Examples/s",
            "Tokenize ms/example",
            "Examples/s with tokenisation",
        ],
        [
            [
                run["when"],
                f"{run['examples']:,}",
                str(run["batch_size"]),
                str(run["threads"]),
                f"{run['model_seconds']:.2f}",
                f"{run['examples_per_s']:.0f}",
                f"{run['tokenize_ms_per_example']:.3f}",
                f"{run['with_tokenization_per_s']:.0f}",
            ]
            for run in result["raw"]
        ],
    )
    targets = Table(
        "Targets (issue 6)",
        ["Target", "Measured", "Met"],
        [
            [t, m, "–" if ok is None else ("yes" if ok else "**no**")]
            for t, m, ok in verdicts(result)
        ],
    )
    lines += [served.markdown(), raw.markdown()]
    predictions = result.get("predictions")
    if predictions:
        lines += [
            "## Predictions",
            "",
            "Every eval example sent once as its own request at 32 clients "
            "(so batched with others and padded to their lengths), "
            "against the same model offline "
            "(transformers' tokenizer, ONNX Runtime at batch 1, unpadded): "
            f"{predictions['labels_equal']}/{predictions['examples']} labels equal "
            f"({predictions['compared']} answered), "
            f"max |Δscore| {predictions['max_abs_score_diff']:.2e}.",
            "",
        ]
    lines += [targets.markdown()]
    errors = {kind: n for level in result["levels"] for kind, n in level["errors_by_kind"].items()}
    notes = [
        f"Per level: {config['warmup']} warm-up requests not counted, "
        f"then up to {config['requests']:,} requests or {config['time_limit']:.0f} s.",
        "Latency is client-side, from writing the request to reading the whole response; "
        "throughput is answered requests over the level's wall time.",
        "Mean batch is items per model call on the server during the level, from its /metrics.",
        "Raw ONNX Runtime runs before the server starts and after it stops; "
        "the higher figure is used for 'vs raw ORT'.",
    ]
    if errors:
        notes.append("Errors by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())))
    if any(level["stopped_by_time_limit"] for level in result["levels"]):
        notes.append("At least one level stopped at the time limit before its request count.")
    lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def run(config: LoadConfig) -> dict:
    threads = config.threads or os.cpu_count() or 1
    env = environment(threads)
    env["command"] = "python " + shlex.join(sys.argv)
    examples = read_examples(config.eval_file, config.columns, require_labels=False)
    items = [
        Item(t, examples.text_pairs[i] if examples.is_pair else None)
        for i, t in enumerate(examples.texts)
    ]
    identity = ServedModel(
        config.export, config.provider, 1
    ).identity  # checks the folder and its hash
    bodies = encode_bodies(items)
    raw_args = (
        config.export,
        items,
        config.max_batch_size,
        threads,
        config.provider,
        config.requests,
        config.time_limit,
    )
    print(
        f"raw ONNX Runtime, batch {config.max_batch_size}, {threads} threads ...", file=sys.stderr
    )
    raw = [{"when": "before serving", **raw_throughput(*raw_args)}]
    server = ServerProcess(config, threads)
    levels, predictions, exit_code = [], None, None
    try:
        server.wait_ready()
        if config.check_predictions:
            print(f"predictions: {len(items)} examples ...", file=sys.stderr)
            predictions = check_predictions(
                "127.0.0.1",
                server.port,
                config.export,
                items,
                bodies,
                identity,
                threads,
                config.provider,
                config.time_limit,
            )
        for clients in config.concurrency:
            print(f"{clients} clients ...", file=sys.stderr)
            level = measure_level("127.0.0.1", server.port, bodies, clients, config)
            print(
                f"  {level['throughput_per_s']:.0f} req/s, p50 {level['p50_ms']:.2f} ms, "
                f"p99 {level['p99_ms']:.2f} ms, errors {level['errors']}, "
                f"mean batch {level['mean_batch_size']:.1f}",
                file=sys.stderr,
            )
            levels.append(level)
    finally:
        exit_code = server.stop(config.graceful_timeout + 30)
    raw.append({"when": "after serving", **raw_throughput(*raw_args)})
    return {
        "title": "Serving under load",
        "environment": env,
        "config": {
            **asdict(config),
            "export": str(config.export),
            "eval_file": str(config.eval_file),
            "out": str(config.out),
            "columns": asdict(config.columns),
        },
        "model": identity.to_dict(),
        "eval_examples": len(items),
        "server_command": server.command,
        "server_exit_code": exit_code,
        "server_shutdown_clean": server.shut_down_cleanly(),
        "raw": raw,
        "predictions": predictions,
        "levels": levels,
        "thresholds": THRESHOLDS,
    }


def parse_args(argv: list[str] | None = None) -> LoadConfig:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See the module docstring for the exact command of the committed result.",
    )
    parser.add_argument(
        "--export", type=Path, required=True, help="Export folder (from `slimbert export`)."
    )
    parser.add_argument(
        "--eval",
        dest="eval_file",
        type=Path,
        required=True,
        help="Texts to send: .tsv/.csv/.jsonl, labels not needed.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="Result Markdown file; the JSON goes beside it with .json.",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=10_000,
        help="Counted requests per client count (default 10000).",
    )
    parser.add_argument(
        "--concurrency", default="1,8,32", help="Comma-separated client counts (default 1,8,32)."
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=300.0,
        help="Seconds per client count and per raw run (default 300).",
    )
    parser.add_argument(
        "--warmup", type=int, default=50, help="Uncounted requests per client count (default 50)."
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="ONNX Runtime intra-op threads for server and raw runs (default: all cores).",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=32,
        help="Server --max-batch-size and raw batch size (default 32).",
    )
    parser.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="Server --max-wait-ms (default 2)."
    )
    parser.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--no-check-predictions",
        action="store_true",
        help="Skip comparing served and offline predictions.",
    )
    parser.add_argument("--text-column")
    parser.add_argument("--text-pair-column")
    args = parser.parse_args(argv)
    try:
        concurrency = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
    except ValueError:
        parser.error(
            f"--concurrency {args.concurrency!r}: give comma-separated whole numbers, e.g. 1,8,32"
        )
    if not concurrency or min(concurrency) < 1 or args.requests < 1 or args.time_limit <= 0:
        parser.error("--concurrency, --requests and --time-limit must be positive")
    return LoadConfig(
        export=args.export,
        eval_file=args.eval_file,
        out=args.out,
        requests=args.requests,
        concurrency=concurrency,
        time_limit=args.time_limit,
        warmup=args.warmup,
        threads=args.threads,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        provider=args.provider,
        check_predictions=not args.no_check_predictions,
        columns=Columns(args.text_column, args.text_pair_column),
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        result = run(config)
    except SlimbertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_json_atomic(config.out.with_suffix(".json"), result)
    write_text_atomic(config.out, render_markdown(result))
    print(render_markdown(result))
    print(f"written to {config.out} and {config.out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
