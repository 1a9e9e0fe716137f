"""`slimbert serve` on tiny exports: predictions equal offline ones, concurrency forms batches,
bad input is a JSON 4xx while the server keeps serving, and SIGTERM drains in-flight requests."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import build_bert, sentiment_rows, write_sst2

from slimbert.cli import cli
from slimbert.errors import SlimbertError
from slimbert.export.onnx import export
from slimbert.export.runtime import OnnxClassifier
from slimbert.serve import BatchConfig, Item, MicroBatcher, ServeConfig, ServedModel, create_app
from slimbert.serve.batching import Overloaded, ShuttingDown
from slimbert.serve.model import softmax

MAX_LENGTH = 16
REPO = Path(__file__).resolve().parents[1]


def _export(root: Path, pair: bool, dev: Path) -> Path:
    model_dir = build_bert(root / "model", layers=2, hidden=32, num_labels=2, seed=3)
    (model_dir / "slimbert.json").write_text(
        json.dumps({"method": "kd", "data": {"pair": pair, "max_length": MAX_LENGTH}})
    )
    export(model_dir, dev, root / "export")
    return root / "export"


@pytest.fixture(scope="session")
def single(tmp_path_factory) -> dict:
    """A 2-layer single-text classifier exported with max_length 16, and its 24-row dev file."""
    root = tmp_path_factory.mktemp("serve-single")
    dev = write_sst2(root / "dev.tsv", sentiment_rows(24, 2))
    return {"export": _export(root, False, dev), "dev": dev}


@pytest.fixture(scope="session")
def paired(tmp_path_factory) -> dict:
    """The same kind of model trained (as its metadata says) on sentence pairs."""
    root = tmp_path_factory.mktemp("serve-pair")
    rows = sentiment_rows(12, 5)
    dev = root / "dev.tsv"
    with open(dev, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["sentence1", "sentence2", "label"])
        for (first, label), (second, _) in zip(rows, reversed(rows), strict=True):
            writer.writerow([first, second, label])
    return {"export": _export(root, True, dev), "dev": dev}


@pytest.fixture(scope="session")
def single_model(single) -> ServedModel:
    return ServedModel(single["export"], "cpu", threads=1)


def serve(model: ServedModel, scenario, **config):
    """Run `scenario(client, app)` against the app with its lifespan running and the model warm."""
    app = create_app(model, ServeConfig(**config))

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://serve.test"
            ) as client:
                for _ in range(500):  # until warm-up has finished, either way
                    if (await client.get("/readyz")).json()["status"] not in (
                        "starting",
                        "warming",
                    ):
                        break
                    await asyncio.sleep(0.01)
                return await scenario(client, app)

    return asyncio.run(main())


def offline(model_path: Path, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
    """Probabilities (N, C) from a bare ONNX Runtime session, one example at a time, unpadded."""
    from slimbert.models import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    session = OnnxClassifier(model_path / "model.onnx", "cpu", 1)
    rows = []
    for i, text in enumerate(texts):
        encoded = tokenizer(
            text,
            pairs[i] if pairs else None,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="np",
        )
        rows.append(softmax(session(dict(encoded)))[0])
    return np.stack(rows)


def metric_value(text: str, name: str, **labels) -> float:
    """A sample's value from Prometheus text, 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        sample, _, label_text = key.partition("{")
        found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if sample == name and found == wanted:
            return float(value)
    return 0.0


# ---------------------------------------------------------------------------------------------
# The model and its identity


def test_identity_comes_from_the_manifest(single, single_model):
    manifest = json.loads((single["export"] / "manifest.json").read_text())
    identity = single_model.identity
    assert identity.name == "export"
    assert (
        identity.sha256 == manifest["files"]["model.onnx"]["sha256"] and len(identity.sha256) == 64
    )
    assert identity.labels == ("0", "1") and identity.task == "classification"
    assert identity.max_length == MAX_LENGTH and identity.inputs == "single"


def test_a_changed_or_missing_model_is_refused(single, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(single["export"], copy)
    with open(copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(SlimbertError, match="differs from the manifest"):
        ServedModel(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(SlimbertError, match="no manifest.json"):
        ServedModel(copy)
    with pytest.raises(SlimbertError, match="no such directory"):
        ServedModel(tmp_path / "absent")


def test_tokenization_matches_transformers(single, paired):
    """The server's Rust tokenizer set-up gives the ids, masks and types transformers gives."""
    from slimbert.models import load_tokenizer

    texts = [
        "good",
        "The Movie, was NOT really very good.",
        "unknown wörds à la carte",
        " ".join(["bad"] * 40),
    ]
    seconds = ["the plot", "a", "really really really " * 10, "fine"]
    for folder, pairs in ((single["export"], None), (paired["export"], seconds)):
        model = ServedModel(folder, threads=1)
        features, truncated = model.encode(
            [Item(t, pairs[i] if pairs else None) for i, t in enumerate(texts)]
        )
        reference = load_tokenizer(folder)(
            texts, pairs, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="np"
        )
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(features[name], reference[name], err_msg=name)
        assert truncated == (
            [False, False, False, True] if pairs is None else [False, False, True, True]
        )


def test_file_names_agree_with_the_exporter():
    from slimbert.export import onnx as exporter
    from slimbert.provenance import METADATA_FILE
    from slimbert.serve import model

    assert (model.ONNX_FILE, model.MANIFEST_FILE, model.METADATA_FILE) == (
        exporter.ONNX_FILE,
        exporter.MANIFEST_FILE,
        METADATA_FILE,
    )


def test_each_batch_is_padded_to_its_own_longest_item(single_model, monkeypatch):
    shapes = []
    original = single_model.classifier.__class__.__call__

    def spy(self, features):
        shapes.append(features["input_ids"].shape)
        return original(self, features)

    monkeypatch.setattr(single_model.classifier.__class__, "__call__", spy)
    short, longer = Item("good"), Item("the movie was not really very good")
    single_model.predict([short])
    single_model.predict([short, longer])
    single_model.predict([Item(" ".join(["good"] * 40))])
    # [CLS] good [SEP] = 3; the longer text is 7 words + 2 specials = 9; 40 words cut to 16
    assert shapes == [(1, 3), (2, 9), (1, MAX_LENGTH)]


# ---------------------------------------------------------------------------------------------
# Predictions over HTTP


def test_served_predictions_equal_offline(single, single_model):
    from slimbert.data import read_examples

    texts = read_examples(single["dev"]).texts
    expected = offline(single["export"], texts)  # (24, 2)

    async def scenario(client, app):
        one_each = await asyncio.gather(
            *(client.post("/v1/predict", json={"texts": [t]}) for t in texts)
        )
        together = await client.post("/v1/predict", json={"texts": texts})
        return [r.json() for r in one_each], together.json()

    one_each, together = serve(single_model, scenario, max_batch_size=8, max_wait_ms=20)
    for answers in ([a["predictions"][0] for a in one_each], together["predictions"]):
        assert [p["label"] for p in answers] == [str(i) for i in expected.argmax(1)]
        scores = np.array([[p["scores"]["0"], p["scores"]["1"]] for p in answers])
        np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert together["model"] == {"name": "export", "sha256": single_model.identity.sha256}
    assert together["warnings"] == [] and all(not p["truncated"] for p in together["predictions"])


def test_pair_model_predictions_equal_offline(paired):
    from slimbert.data import read_examples

    examples = read_examples(paired["dev"])
    model = ServedModel(paired["export"], threads=1)
    assert model.identity.inputs == "pair"
    expected = offline(paired["export"], examples.texts, examples.text_pairs)

    async def scenario(client, app):
        pairs = [[a, b] for a, b in zip(examples.texts, examples.text_pairs, strict=True)]
        answer = await client.post("/v1/predict", json={"pairs": pairs})
        single_texts = await client.post("/v1/predict", json={"texts": ["just one text"]})
        return answer, single_texts

    answer, single_texts = serve(model, scenario)
    assert answer.status_code == 200
    labels = [p["label"] for p in answer.json()["predictions"]]
    assert labels == [str(i) for i in expected.argmax(1)]
    assert (
        single_texts.status_code == 422 and single_texts.json()["error"]["kind"] == "pairs_required"
    )


def test_long_text_is_truncated_and_flagged(single_model):
    async def scenario(client, app):
        return await client.post("/v1/predict", json={"texts": ["good", " ".join(["bad"] * 50)]})

    response = serve(single_model, scenario)
    assert response.status_code == 200
    body = response.json()
    assert [p["truncated"] for p in body["predictions"]] == [False, True]
    assert [p["tokens"] for p in body["predictions"]] == [3, MAX_LENGTH]
    assert body["warnings"] == [
        f"texts[1]: truncated to the model's maximum of {MAX_LENGTH} tokens"
    ]


def test_concurrent_requests_form_batches(single_model):
    async def scenario(client, app):
        before = (await client.get("/metrics")).text
        responses = await asyncio.gather(
            *(client.post("/v1/predict", json={"texts": [f"good movie {i}"]}) for i in range(16))
        )
        after = (await client.get("/metrics")).text
        return before, responses, after

    # max_wait 2 s: the first batch waits until it is full (8), which takes milliseconds
    before, responses, after = serve(single_model, scenario, max_batch_size=8, max_wait_ms=2000)
    assert [r.status_code for r in responses] == [200] * 16
    batches = metric_value(after, "slimbert_batch_size_count") - metric_value(
        before, "slimbert_batch_size_count"
    )
    items = metric_value(after, "slimbert_batch_size_sum") - metric_value(
        before, "slimbert_batch_size_sum"
    )
    assert (batches, items) == (2.0, 16.0)
    assert metric_value(after, "slimbert_items_total") == 16.0


# ---------------------------------------------------------------------------------------------
# Bad input: ≥ 15 kinds, each a JSON 4xx, and the server keeps serving after every one


async def _chunks(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


JSON = {"Content-Type": "application/json"}
BAD_INPUT = [
    # (case, method, path, keyword arguments for httpx, status, kind)
    (
        "not JSON",
        "POST",
        "/v1/predict",
        {"content": b"texts=hello", "headers": JSON},
        400,
        "invalid_json",
    ),
    ("empty body", "POST", "/v1/predict", {"content": b"", "headers": JSON}, 400, "invalid_json"),
    (
        "invalid UTF-8",
        "POST",
        "/v1/predict",
        {"content": b'{"texts": ["\xff\xfe"]}', "headers": JSON},
        400,
        "invalid_json",
    ),
    (
        "nested 1,000 deep",
        "POST",
        "/v1/predict",
        {"content": b"[" * 1_000, "headers": JSON},
        400,
        "invalid_json",
    ),
    ("body is an array", "POST", "/v1/predict", {"json": ["good"]}, 422, "wrong_type"),
    ("texts is a string", "POST", "/v1/predict", {"json": {"texts": "good"}}, 422, "wrong_type"),
    (
        "a text is a number",
        "POST",
        "/v1/predict",
        {"json": {"texts": ["good", 3]}},
        422,
        "wrong_type",
    ),
    ("a text is null", "POST", "/v1/predict", {"json": {"texts": [None]}}, 422, "wrong_type"),
    ("no texts or pairs", "POST", "/v1/predict", {"json": {}}, 422, "missing_field"),
    ("unknown field", "POST", "/v1/predict", {"json": {"text": ["good"]}}, 422, "unknown_field"),
    (
        "texts and pairs",
        "POST",
        "/v1/predict",
        {"json": {"texts": ["a"], "pairs": [["a", "b"]]}},
        422,
        "conflicting_fields",
    ),
    ("empty list", "POST", "/v1/predict", {"json": {"texts": []}}, 422, "empty_list"),
    (
        "too many items",
        "POST",
        "/v1/predict",
        {"json": {"texts": ["good"] * 9}},
        422,
        "too_many_items",
    ),
    ("empty text", "POST", "/v1/predict", {"json": {"texts": ["good", ""]}}, 422, "empty_text"),
    ("whitespace text", "POST", "/v1/predict", {"json": {"texts": [" \n\t "]}}, 422, "empty_text"),
    (
        "text over max chars",
        "POST",
        "/v1/predict",
        {"json": {"texts": ["g" * 201]}},
        422,
        "text_too_long",
    ),
    (
        "pairs for a single-text model",
        "POST",
        "/v1/predict",
        {"json": {"pairs": [["good", "bad"]]}},
        422,
        "pairs_not_supported",
    ),
    (
        "a pair of three",
        "POST",
        "/v1/predict",
        {"json": {"pairs": [["a", "b", "c"]]}},
        422,
        "bad_pair",
    ),
    (
        "oversize body",
        "POST",
        "/v1/predict",
        {"json": {"texts": ["good " * 100] * 4}},
        413,
        "body_too_large",
    ),
    (
        "oversize chunked body",
        "POST",
        "/v1/predict",
        {"content": _chunks(b'{"texts": ["' + b"x" * 3000 + b'"]}', 256), "headers": JSON},
        413,
        "body_too_large",
    ),
    (
        "text/plain",
        "POST",
        "/v1/predict",
        {"content": b'{"texts": ["good"]}', "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    (
        "no content type",
        "POST",
        "/v1/predict",
        {"content": b'{"texts": ["good"]}'},
        415,
        "unsupported_media_type",
    ),
    ("unknown route", "POST", "/v2/predict", {"json": {"texts": ["good"]}}, 404, "not_found"),
    ("GET on predict", "GET", "/v1/predict", {}, 405, "method_not_allowed"),
    ("DELETE on healthz", "DELETE", "/healthz", {}, 405, "method_not_allowed"),
]


def test_bad_input_is_a_json_4xx_and_the_server_keeps_serving(single_model):
    async def scenario(client, app):
        outcomes = []
        for case, method, path, kwargs, _, _ in BAD_INPUT:
            if "content" in kwargs and not isinstance(
                kwargs["content"], bytes
            ):  # a generator: fresh each run
                kwargs = {**kwargs, "content": _chunks(b'{"texts": ["' + b"x" * 3000 + b'"]}', 256)}
            response = await client.request(method, path, **kwargs)
            healthy = await client.post("/v1/predict", json={"texts": ["still serving"]})
            outcomes.append((case, response, healthy))
        return outcomes, (await client.get("/metrics")).text

    outcomes, metrics = serve(
        single_model, scenario, max_items=8, max_text_chars=200, max_body_bytes=2000
    )
    kinds = set()
    for (case, _, _, _, status, kind), (_, response, healthy) in zip(
        BAD_INPUT, outcomes, strict=True
    ):
        assert response.headers["content-type"] == "application/json", case
        error = response.json()["error"]
        assert (response.status_code, error["kind"]) == (status, kind), (
            f"{case}: {response.status_code} {error}"
        )
        assert 400 <= response.status_code < 500 and len(error["message"]) > 10, case
        assert healthy.status_code == 200 and healthy.json()["predictions"][0]["label"] in (
            "0",
            "1",
        ), case
        kinds.add(kind)
    assert len(BAD_INPUT) >= 15 and len(kinds) >= 15
    for kind in kinds:
        assert metric_value(metrics, "slimbert_errors_total", kind=kind) == sum(
            1 for c in BAD_INPUT if c[5] == kind
        ), kind
    assert metric_value(
        metrics, "slimbert_requests_total", route="/v1/predict", method="POST", status="200"
    ) == len(BAD_INPUT)


def test_messages_name_the_problem(single_model):
    async def scenario(client, app):
        wrong = await client.post("/v1/predict", json={"texts": ["good", 3]})
        empty = await client.post("/v1/predict", json={"texts": ["good", "  "]})
        missing = await client.get("/nowhere")
        return wrong.json(), empty.json(), missing.json()

    wrong, empty, missing = serve(single_model, scenario)
    assert wrong["error"]["message"] == "texts[1]: expected a string, got int"
    assert empty["error"]["message"] == "texts[1] is empty or only whitespace"
    assert missing["error"]["message"] == "no route GET /nowhere; see /docs for the routes"


def test_a_failing_model_call_fails_its_request_only(single_model, monkeypatch):
    original = ServedModel.predict

    def fragile(self, items):
        if any(item.text == "explode" for item in items):
            raise RuntimeError("boom")
        return original(self, items)

    monkeypatch.setattr(ServedModel, "predict", fragile)

    async def scenario(client, app):
        failed = await client.post("/v1/predict", json={"texts": ["explode"]})
        fine = await client.post("/v1/predict", json={"texts": ["good"]})
        return failed, fine

    failed, fine = serve(single_model, scenario, max_wait_ms=0)
    assert failed.status_code == 500 and failed.json()["error"]["kind"] == "inference_failed"
    assert fine.status_code == 200


# ---------------------------------------------------------------------------------------------
# Health, readiness, metrics, OpenAPI


def test_health_readiness_metrics_and_openapi(single_model):
    app = create_app(single_model)

    async def before_start():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://serve.test"
        ) as client:
            return (
                await client.get("/healthz"),
                await client.get("/readyz"),
                await client.post("/v1/predict", json={"texts": ["good"]}),
            )

    alive, not_ready, refused = asyncio.run(before_start())
    assert alive.status_code == 200 and alive.json() == {"status": "alive"}
    assert not_ready.status_code == 503 and not_ready.json()["status"] == "starting"
    assert refused.status_code == 503 and refused.json()["error"]["kind"] == "not_ready"

    async def scenario(client, app):
        ready = await client.get("/readyz")
        await client.post("/v1/predict", json={"texts": ["good"]})
        return (
            ready,
            await client.get("/metrics"),
            await client.get("/openapi.json"),
            await client.get("/docs"),
            await client.get("/v1/model"),
        )

    ready, metrics, openapi, docs, info = serve(single_model, scenario)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        metric_value(
            text, "slimbert_requests_total", route="/v1/predict", method="POST", status="200"
        )
        == 1.0
    )
    assert metric_value(text, "slimbert_request_latency_seconds_count", route="/v1/predict") == 1.0
    assert metric_value(text, "slimbert_ready") == 1.0
    assert f'sha256="{single_model.identity.sha256}"' in text
    schema = openapi.json()["paths"]["/v1/predict"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    assert set(schema["properties"]) == {"texts", "pairs"}
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert info.json()["labels"] == ["0", "1"] and info.json()["limits"]["max_items"] == 256
    # Each app has its own registry: the untouched app above counted none of these requests.
    assert b"slimbert_items_total 0.0" in app.state.metrics.render()


def test_a_failed_warm_up_keeps_the_server_alive_but_not_ready(single_model, monkeypatch):
    def broken(self, batch_size):
        raise RuntimeError("no memory for a full batch")

    monkeypatch.setattr(ServedModel, "warm_up", broken)

    async def scenario(client, app):
        return (
            await client.get("/healthz"),
            await client.get("/readyz"),
            await client.post("/v1/predict", json={"texts": ["good"]}),
        )

    alive, ready, answer = serve(single_model, scenario)
    assert alive.status_code == 200
    assert ready.status_code == 503 and ready.json()["status"] == "warm_up_failed"
    assert answer.status_code == 200  # requests are still answered; the orchestrator decides


# ---------------------------------------------------------------------------------------------
# The batcher on its own


def test_batcher_drains_on_close_and_then_refuses():
    seen = []

    def run_batch(items):
        time.sleep(0.02)
        seen.append(len(items))
        return [item * 10 for item in items]

    async def main():
        batcher = MicroBatcher(
            run_batch, BatchConfig(max_batch_size=4, max_wait_ms=50, max_queue=64)
        )
        batcher.start()
        requests = [asyncio.ensure_future(batcher.submit([i, i + 100])) for i in range(5)]
        await asyncio.sleep(0)  # let every request queue its items
        await batcher.close()
        results = await asyncio.gather(*requests)
        with pytest.raises(ShuttingDown):
            await batcher.submit([1])
        return results

    results = asyncio.run(main())
    assert results == [[i * 10, (i + 100) * 10] for i in range(5)]
    assert seen == [4, 4, 2]  # 10 items in batches of at most 4, none dropped


def test_batcher_refuses_past_max_queue_and_survives_a_failing_batch():
    def run_batch(items):
        if "bad" in items:
            raise ValueError("bad item")
        time.sleep(0.01)
        return items

    async def main():
        batcher = MicroBatcher(run_batch, BatchConfig(max_batch_size=2, max_wait_ms=0, max_queue=3))
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a", "b", "c"]))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit(["d", "e"])  # 3 pending + 2 > max_queue 3
        answered = await first
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit(["bad"])
        after = await batcher.submit(["f"])
        await batcher.close()
        return answered, after

    assert asyncio.run(main()) == (["a", "b", "c"], ["f"])


# ---------------------------------------------------------------------------------------------
# The command: errors, and a real uvicorn process drained by SIGTERM


def test_serve_command_names_a_bad_folder(tmp_path):
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "absent")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {tmp_path / 'absent'}: no such directory; give a folder written by `slimbert export`"
    ]


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
