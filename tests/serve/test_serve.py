"""`slimbert serve` on tiny exports: the served model and its identity, predictions equal to
offline ones, concurrency forming batches, health, readiness and metrics.

Bad input: test_serve_requests.py; the batcher alone: test_serve_batching.py; the command and a
real server process: test_serve_command.py."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import numpy as np
import pytest
from serving import MAX_LENGTH, metric_value, offline, paired_export, serve, single_export

from slimbert.errors import SlimbertError
from slimbert.serve import Item, ServedModel, create_app


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    return single_export(tmp_path_factory.mktemp("serve-single"))


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> dict:
    return paired_export(tmp_path_factory.mktemp("serve-pair"))


@pytest.fixture(scope="module")
def single_model(single) -> ServedModel:
    return ServedModel(single["export"], "cpu", threads=1)


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
