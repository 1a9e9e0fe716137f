"""`slimbert serve` as a command: a bad folder is one line, a real uvicorn process drains
in-flight requests on SIGTERM, and the load generator (benchmarks/serve_load.py) reports what
it measured."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from serving import single_export

from slimbert.cli import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    return single_export(tmp_path_factory.mktemp("serve-single"))


# ---------------------------------------------------------------------------------------------
# The command: errors, and a real uvicorn process drained by SIGTERM


def test_serve_command_names_a_bad_folder(tmp_path):
    absent = str(tmp_path / "absent")
    # --model, the positional folder older command lines give, or both naming one folder
    for args in ([absent], ["--model", absent], [absent, "--model", absent]):
        result = CliRunner().invoke(cli, ["serve", *args])
        assert result.exit_code == 1, args
        assert result.output.strip().splitlines() == [
            f"Error: {absent}: no such directory; give a folder written by `slimbert export`"
        ]


def test_serve_command_takes_one_folder(tmp_path):
    neither = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert neither.exit_code == 2 and "Missing option '--model'" in neither.output
    both = CliRunner().invoke(cli, ["serve", str(tmp_path / "a"), "--model", str(tmp_path / "b")])
    assert both.exit_code == 2
    assert both.output.strip().splitlines()[-1] == (
        f"Error: --model {tmp_path / 'b'} and EXPORT_DIR {tmp_path / 'a'} name different "
        "folders; give the folder once, as --model DIR"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sigterm_finishes_in_flight_requests(single, tmp_path):
    port = _free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as handle:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slimbert",
                "serve",
                str(single["export"]),
                "--port",
                str(port),
                "--threads",
                "1",
                "--max-wait-ms",
                "1500",
                "--max-batch-size",
                "64",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("server never became ready:\n" + log.read_text())

        async def in_flight():
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                requests = [
                    asyncio.ensure_future(client.post("/v1/predict", json={"texts": [f"good {i}"]}))
                    for i in range(6)
                ]
                await asyncio.sleep(0.5)  # all six wait in the batcher (max wait 1.5 s) ...
                server.send_signal(signal.SIGTERM)  # ... when the server is told to stop
                return await asyncio.gather(*requests)

        responses = asyncio.run(in_flight())
        assert [r.status_code for r in responses] == [200] * 6
        assert server.wait(30) in (
            0,
            -signal.SIGTERM,
        )  # uvicorn re-raises SIGTERM after a clean shutdown
        output = log.read_text()
        assert "Application shutdown complete" in output and "Traceback" not in output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# ---------------------------------------------------------------------------------------------
# The load generator


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "serve_load", REPO / "benchmarks" / "serve_load.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("serve_load", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_load_generator_result_file_states_its_provenance_and_targets():
    load = _load_generator()
    level = {
        "clients": 32,
        "sent": 10_000,
        "answered": 10_000,
        "errors": 0,
        "errors_by_kind": {},
        "seconds": 20.0,
        "throughput_per_s": 500.0,
        "p50_ms": 60.0,
        "p90_ms": 80.0,
        "p99_ms": 150.0,
        "mean_ms": 62.0,
        "p99_over_p50": 2.5,
        "batches": 330,
        "mean_batch_size": 30.3,
        "stopped_by_time_limit": False,
    }
    raw = {
        "examples": 10_016,
        "batches": 313,
        "batch_size": 32,
        "threads": 2,
        "model_seconds": 15.0,
        "examples_per_s": 680.0,
        "tokenize_ms_per_example": 0.05,
        "with_tokenization_per_s": 660.0,
    }
    result = {
        "environment": {
            "command": "python benchmarks/serve_load.py --export x",
            "git_revision": "abc1234",
            "date": "2026-01-01 00:00 UTC",
            "cpu": "cpu",
            "cores": 2,
            "versions": {},
        },
        "config": {"eval_file": "dev.tsv", "requests": 10_000, "time_limit": 300.0, "warmup": 50},
        "model": {
            "name": "kd-3L-onnx",
            "sha256": "f" * 64,
            "task": "classification",
            "max_length": 64,
        },
        "eval_examples": 872,
        "server_command": ["python", "-m", "slimbert", "serve", "x"],
        "server_exit_code": -15,
        "server_shutdown_clean": True,
        "raw": [
            {"when": "before serving", **raw},
            {"when": "after serving", **raw, "examples_per_s": 700.0},
        ],
        "predictions": {
            "examples": 872,
            "compared": 872,
            "labels_equal": 872,
            "max_abs_score_diff": 0.0,
            "errors": {},
        },
        "levels": [level],
    }
    text = load.render_markdown(result)
    head = text.splitlines()[2:5]
    assert head == [
        "- Command: `python benchmarks/serve_load.py --export x`",
        "- Git revision: abc1234",
        "- Date: 2026-01-01 00:00 UTC",
    ]
    assert "| 32 | 10,000 | 0 | 20.0 | 500 | 60.00 | 80.00 | 150.00 | 2.50 | 30.3 | 71% |" in text
    verdicts = load.verdicts(result)
    assert [ok for _, _, ok in verdicts] == [True] * 5
    assert verdicts[0][1] == "500 / 700 = 71%"
    assert re.search(r"500 / 700 = 71%", text)


@pytest.mark.slow
def test_load_generator_end_to_end(single, tmp_path):
    load = _load_generator()
    out = tmp_path / "serve-load.md"
    code = load.main(
        [
            "--export",
            str(single["export"]),
            "--eval",
            str(single["dev"]),
            "--requests",
            "60",
            "--concurrency",
            "1,8",
            "--time-limit",
            "20",
            "--warmup",
            "5",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [level["answered"] for level in result["levels"]] == [60, 60]
    assert result["predictions"]["labels_equal"] == 24 and result["server_shutdown_clean"]
