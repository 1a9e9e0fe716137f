"""Bad input to `POST /v1/predict`: each kind a JSON 4xx naming the problem, and the server
keeps serving after every one."""

from __future__ import annotations

import pytest
from serving import metric_value, serve, single_export

from slimbert.serve import Item, ServedModel
from slimbert.serve.folder import ANY, PAIR, SINGLE
from slimbert.serve.requests import ApiError, parse_predict


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    return single_export(tmp_path_factory.mktemp("serve-single"))


@pytest.fixture(scope="module")
def single_model(single) -> ServedModel:
    return ServedModel(single["export"], "cpu", threads=1)


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
    ("unknown route", "POST", "/v1/classify", {"json": {"texts": ["good"]}}, 404, "not_found"),
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


def test_parse_predict_without_a_server():
    assert parse_predict(b'{"texts": ["good", "bad plot"]}', ANY, 8, 100) == (
        "texts",
        [Item("good"), Item("bad plot")],
    )
    assert parse_predict(b'{"pairs": [["a b", "c"]]}', PAIR, 8, 100) == (
        "pairs",
        [Item("a b", "c")],
    )
    with pytest.raises(ApiError) as refused:
        parse_predict(b'{"pairs": [["a", "b"]]}', SINGLE, 8, 100)
    assert (refused.value.status, refused.value.kind) == (422, "pairs_not_supported")
    with pytest.raises(ApiError) as too_many:
        parse_predict(b'{"texts": ["a", "b", "c"]}', ANY, 2, 100)
    assert too_many.value.message == '"texts" has 3 items; at most 2 per request (--max-items)'
    with pytest.raises(ApiError) as too_long:
        parse_predict(b'{"pairs": [["a", "bbbbb"]]}', ANY, 8, 4)
    assert too_long.value.message == ("pairs[0][1] has 5 characters; at most 4 (--max-text-chars)")
