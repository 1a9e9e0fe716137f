"""The Open Inference Protocol (v2) routes of `slimbert serve`, driven by tritonclient's HTTP
client as a real client against a real uvicorn server on localhost: the same labels and scores
as /v1/predict for a whole dev set, in binary and in JSON, and errors as the protocol's
messages. The JSON shapes by hand: test_v2_* at the end."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving import (
    foreign_export,
    foreign_offline,
    metric_value,
    offline,
    paired_export,
    serve,
    single_export,
)

from slimbert.data import read_examples
from slimbert.serve import ServeConfig, ServedModel, create_app, oip
from slimbert.serve.model import Item, ModelIdentity

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> dict:
    return paired_export(tmp_path_factory.mktemp("oip-pair"))


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    return single_export(tmp_path_factory.mktemp("oip-single"))


@contextmanager
def running(model: ServedModel, **config):
    """The app under uvicorn on a free localhost port, in a thread; yields 'host:port' once
    /readyz answers 200."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(model, ServeConfig(**config))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "the server did not become ready"
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def texts_tensor(name: str, texts: list[str], binary: bool):
    tensor = httpclient.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    return tensor


def decoded(values: np.ndarray) -> list[str]:
    """BYTES as tritonclient returns them: bytes from binary outputs, str from JSON ones."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.ravel()]


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    return foreign_export(tmp_path_factory.mktemp("oip-foreign"))


@pytest.mark.parametrize("kind", ["slimbert", "foreign"])
def test_tritonclient_labels_equal_v1_for_the_whole_dev_set(kind, paired, foreign):
    """A slimbert pair export (whose random head answers '1' throughout, so the scores carry
    the comparison), and the foreign DistilBERT (sharpened: both labels occur) on the same
    pairs."""
    examples = read_examples(paired["dev"])
    first, second = examples.texts, examples.text_pairs
    folder = paired["export"] if kind == "slimbert" else foreign
    model = ServedModel(folder, threads=1)
    name = model.identity.name
    with running(model, max_batch_size=5, max_wait_ms=5) as url:
        client = httpclient.InferenceServerClient(url)
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name) and not client.is_model_ready("another")
        metadata = client.get_model_metadata(name)
        v1 = httpx.post(
            f"http://{url}/v1/predict",
            json={"pairs": [[a, b] for a, b in zip(first, second, strict=True)]},
        ).json()["predictions"]
        # the whole set in one request, binary both ways (tritonclient's default); the
        # batcher splits it into batches of 5
        whole = client.infer(
            name, [texts_tensor("text", first, True), texts_tensor("text_pair", second, True)]
        )
        # and one request per pair in JSON, asking for label and scores only
        one_each = [
            client.infer(
                name,
                [texts_tensor("text", [a], False), texts_tensor("text_pair", [b], False)],
                outputs=[
                    httpclient.InferRequestedOutput("label", binary_data=False),
                    httpclient.InferRequestedOutput("scores", binary_data=False),
                ],
                request_id=f"row-{i}",
            )
            for i, (a, b) in enumerate(zip(first, second, strict=True))
        ]
        metrics = httpx.get(f"http://{url}/metrics").text
        client.close()

    assert [t["name"] for t in metadata["inputs"]] == ["text", "text_pair"]
    assert {t["datatype"] for t in metadata["inputs"]} == {"BYTES"}
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["outputs"]] == [
        ("label", "BYTES", [-1]),
        ("scores", "FP32", [-1, 2]),
        ("truncated", "BOOL", [-1]),
    ]
    labels = json.loads(metadata["parameters"]["labels"])
    assert labels == list(model.identity.labels)
    assert metadata["parameters"]["takes"] == ("pair" if kind == "slimbert" else "any")

    v1_labels = [p["label"] for p in v1]
    v1_scores = np.array([[p["scores"][label] for label in labels] for p in v1])  # (12, 2)
    if kind == "slimbert":
        expected = offline(folder, first, second)
    else:
        expected = foreign_offline(folder, first, second)
        assert set(v1_labels) == {"negative", "positive"}
    assert v1_labels == [labels[i] for i in expected.argmax(1)]  # v1 itself is right

    assert decoded(whole.as_numpy("label")) == v1_labels
    scores = whole.as_numpy("scores")
    assert scores.dtype == np.float32 and scores.shape == (len(first), 2)
    np.testing.assert_allclose(scores, v1_scores, atol=1e-6)
    assert whole.as_numpy("truncated").tolist() == [p["truncated"] for p in v1]

    assert [decoded(r.as_numpy("label"))[0] for r in one_each] == v1_labels
    np.testing.assert_allclose(
        np.concatenate([r.as_numpy("scores") for r in one_each]), v1_scores, atol=1e-6
    )
    assert one_each[3].get_response()["id"] == "row-3"
    assert one_each[0].as_numpy("truncated") is None  # not asked for
    route = "/v2/models/{name}/infer"
    assert metric_value(
        metrics, "slimbert_requests_total", route=route, method="POST", status="200"
    ) == 1 + len(first)
    assert metric_value(metrics, "slimbert_items_total") == 3 * len(first)


def test_tritonclient_sees_the_protocols_errors(paired, single):
    with running(ServedModel(paired["export"], threads=1)) as url:
        client = httpclient.InferenceServerClient(url)
        name = "export"
        with pytest.raises(InferenceServerException, match="no model 'nope'; this server serves"):
            client.infer("nope", [texts_tensor("text", ["a"], True)])
        with pytest.raises(InferenceServerException, match="trained on text pairs"):
            client.infer(name, [texts_tensor("text", ["a"], True)])
        numbers = httpclient.InferInput("text", [1], "INT64")
        numbers.set_data_from_numpy(np.array([3], dtype=np.int64))
        with pytest.raises(InferenceServerException, match="is INT64; send BYTES"):
            client.infer(name, [numbers, texts_tensor("text_pair", ["b"], True)])
        with pytest.raises(InferenceServerException, match="text\\[0\\] is empty"):
            client.infer(
                name, [texts_tensor("text", [" "], False), texts_tensor("text_pair", ["b"], False)]
            )
        with pytest.raises(InferenceServerException, match="unknown output 'logits'"):
            client.infer(
                name,
                [texts_tensor("text", ["a"], True), texts_tensor("text_pair", ["b"], True)],
                outputs=[httpclient.InferRequestedOutput("logits")],
            )
        client.close()
    with running(ServedModel(single["export"], threads=1)) as url:
        client = httpclient.InferenceServerClient(url)
        metadata = client.get_model_metadata("export")
        assert [t["name"] for t in metadata["inputs"]] == ["text"]
        with pytest.raises(InferenceServerException, match="trained on single texts"):
            client.infer(
                "export",
                [texts_tensor("text", ["a"], True), texts_tensor("text_pair", ["b"], True)],
            )
        answer = client.infer("export", [texts_tensor("text", ["good", "awful film"], True)])
        assert decoded(answer.as_numpy("label")) == [
            p["label"]
            for p in httpx.post(
                f"http://{url}/v1/predict", json={"texts": ["good", "awful film"]}
            ).json()["predictions"]
        ]
        client.close()


# ---------------------------------------------------------------------------------------------
# The protocol's JSON by hand (in process)


def test_v2_json_request_and_response_shapes(single):
    model = ServedModel(single["export"], threads=1)

    def request(data, shape, **extra):
        return {
            "inputs": [{"name": "text", "shape": shape, "datatype": "BYTES", "data": data}],
            **extra,
        }

    async def scenario(client, app):
        nested = await client.post(
            "/v2/models/export/versions/1/infer",
            json=request([["good"], ["awful film"]], [2, 1], id="42", outputs=[{"name": "label"}]),
        )
        v1 = await client.post("/v1/predict", json={"texts": ["good", "awful film"]})
        bad = [
            await client.post("/v2/models/export/infer", json=body)
            for body in (
                request(["a", "b"], [3]),
                {"inputs": []},
                request(["a"], [1, 2]),
                request([1], [1]),
                {"input": 3},
            )
        ]
        return (
            nested,
            v1,
            bad,
            await client.get("/v2/models/export/versions/2"),
            await client.post("/v2/models/export/infer", content=b"{not json"),
            await client.get("/v2"),
            await client.get("/v2/health/ready"),
            await client.get("/v2/health/live"),
            await client.get("/v2/nowhere"),
        )

    nested, v1, bad, version, broken, server, ready, live, nowhere = serve(model, scenario)
    assert nested.status_code == 200 and nested.headers["content-type"] == "application/json"
    assert nested.json() == {
        "model_name": "export",
        "model_version": "1",
        "id": "42",
        "outputs": [
            {
                "name": "label",
                "datatype": "BYTES",
                "shape": [2],
                "data": [p["label"] for p in v1.json()["predictions"]],
            }
        ],
    }
    messages = [(r.status_code, r.json()["error"]) for r in bad]
    assert messages == [
        (400, "input 'text': shape [3] says 3 elements, the data holds 2"),
        (400, "no input 'text'; give the texts as a BYTES tensor"),
        (400, "input 'text' has shape [1, 2]; send [N] or [N, 1]"),
        (400, "input 'text'[0]: expected a string, got int"),
        (400, "inputs: Field required; see the Open Inference Protocol's inference request"),
    ]
    assert version.status_code == 404 and "the only version is '1'" in version.json()["error"]
    assert broken.status_code == 400 and broken.json()["error"].startswith("the request is not")
    assert server.json() == {
        "name": "slimbert",
        "version": server.json()["version"],
        "extensions": ["binary_tensor_data"],
    }
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert live.status_code == 200 and live.json() == {"live": True}
    assert nowhere.status_code == 404 and isinstance(nowhere.json()["error"], str)


def test_v2_binary_request_by_hand(single):
    """The binary tensor extension without tritonclient: a JSON header, then the input's
    length-prefixed UTF-8 elements; outputs asked for in binary come back after the header."""
    model = ServedModel(single["export"], threads=1)
    texts = ["good", "wörds à la carte"]
    raw = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "scores", "parameters": {"binary_data": True}}],
        }
    ).encode()

    async def scenario(client, app):
        answer = await client.post(
            "/v2/models/export/infer",
            content=header + raw,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        short = await client.post(
            "/v2/models/export/infer",
            content=header + raw[:-3],
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        v1 = await client.post("/v1/predict", json={"texts": texts})
        return answer, short, v1

    answer, short, v1 = serve(model, scenario)
    size = int(answer.headers["inference-header-content-length"])
    response = json.loads(answer.content[:size])
    assert response["outputs"] == [
        {
            "name": "scores",
            "datatype": "FP32",
            "shape": [2, 2],
            "parameters": {"binary_data_size": 16},
        }
    ]
    scores = np.frombuffer(answer.content[size:], dtype="<f4").reshape(2, 2)
    expected = [[p["scores"]["0"], p["scores"]["1"]] for p in v1.json()["predictions"]]
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert short.status_code == 400 and "runs past the body's binary data" in short.json()["error"]


def test_the_benchmark_script_end_to_end(paired, tmp_path):
    """benchmarks/serve_oip.py: a real `slimbert serve --model` process, tritonclient against
    /v1 on every dev row, a README that starts with its command."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_oip.py"
    out = tmp_path / "serve-oip"
    args = ["--export", str(paired["export"]), "--eval", str(paired["dev"]), "--out", str(out)]
    result = subprocess.run(
        [sys.executable, str(script), *args, "--request-size", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[:2] == [
        "binary, 5 rows per request: 12/12 labels equal to v1",
        "JSON, 1 row per request: 12/12 labels equal to v1",
    ]
    record = json.loads((out / "result.json").read_text())
    assert record["rows"] == 12 and record["metadata"]["parameters"]["takes"] == "pair"
    assert sum(record["v1"]["label_counts"].values()) == 12
    for figures in record["v2"].values():
        assert figures["same_label_as_v1"] == 12 and figures["max_abs_score_diff"] < 1e-6
    readme = (out / "README.md").read_text()
    assert readme.splitlines()[2].startswith("- Command: `python ")
    assert "| binary, 5 rows per request | 12 | 12/12 |" in readme


def test_a_regression_model_answers_value_and_scores():
    """render_infer alone, for an STS-B-like model: 'value' replaces 'label'."""
    identity = ModelIdentity("stsb", "0" * 64, "regression", ("score",), 128, "pair", "cpu", 1)
    metadata = oip.model_metadata(identity)
    assert [t["name"] for t in metadata["outputs"]] == ["value", "scores", "truncated"]
    predictions = [
        {"label": None, "value": 3.25, "scores": {"score": 3.25}, "tokens": 9, "truncated": False},
        {"label": None, "value": 0.5, "scores": {"score": 0.5}, "tokens": 128, "truncated": True},
    ]
    items = [Item("a", "b"), Item("c", "d")]
    body, header_length = oip.render_infer(
        identity, oip.Infer("7", items, {"value": False, "truncated": True}), predictions
    )
    assert header_length is not None
    header = json.loads(body[:header_length])
    assert header["id"] == "7" and header["outputs"] == [
        {"name": "value", "datatype": "FP32", "shape": [2], "data": [3.25, 0.5]},
        {
            "name": "truncated",
            "datatype": "BOOL",
            "shape": [2],
            "parameters": {"binary_data_size": 2},
        },
    ]
    assert body[header_length:] == b"\x00\x01"
    with pytest.raises(oip.ApiError, match="unknown output 'label'; the model answers value"):
        oip.parse_infer(
            json.dumps(
                {
                    "inputs": [
                        {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]},
                        {"name": "text_pair", "shape": [1], "datatype": "BYTES", "data": ["b"]},
                    ],
                    "outputs": [{"name": "label"}],
                }
            ).encode(),
            None,
            identity,
            8,
            100,
        )
