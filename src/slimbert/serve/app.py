"""The HTTP surface of `slimbert serve`: a FastAPI app over one ServedModel and a MicroBatcher.

    POST /v1/predict   {"texts": ["..."]} or {"pairs": [["...", "..."]]}
                       -> {"model": {"name", "sha256"},
                           "predictions": [{"label", "scores", ...}], "warnings": [...]}
    GET  /v1/model     the model's identity, labels, limits
    GET  /healthz      alive (200 as soon as the process answers)
    GET  /readyz       200 once the model is loaded and warmed up; 503 while warming, after a
                       failed warm-up, or while shutting down
    GET  /metrics      Prometheus text format, from this app's own registry
    GET  /docs         OpenAPI page (/openapi.json)
    /v2/...            the Open Inference Protocol (KServe v2): health, model metadata and
                       infer, for Triton and KServe clients (serve/oip.py); /v2 infer requests
                       join the same batches as /v1/predict

Every error is JSON, `{"error": {"kind": "...", "message": "..."}}` (on /v2 routes the
protocol's `{"error": "message"}`), and a client's mistake is a 4xx that names what was wrong;
it never reaches the model or the batching loop, so one bad request cannot take the server
down. The body is parsed by pydantic from the raw bytes (strict types, unknown fields refused)
so that each failure maps onto one `kind`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from slimbert import __version__
from slimbert.serve import oip
from slimbert.serve.batching import BatchConfig, MicroBatcher, Overloaded, ShuttingDown
from slimbert.serve.metrics import ServeMetrics
from slimbert.serve.model import Item, ModelIdentity, ServedModel
from slimbert.serve.requests import (
    ApiError,
    ErrorBody,
    PredictRequest,
    PredictResponse,
    parse_predict,
    read_body,
)

log = logging.getLogger("slimbert.serve")
V2_MODEL = "/v2/models/{name}"
V2_VERSION = "/v2/models/{name}/versions/{version}"
ROUTES = (
    "/v1/predict",
    "/v1/model",
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    *(base + tail for base in (V2_MODEL, V2_VERSION) for tail in ("", "/ready", "/infer")),
)
JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class ServeConfig:
    """Batching and input limits; CLI flags map one-to-one onto these fields.

    max_batch_size:  most items per model call
    max_wait_ms:     longest the oldest pending item waits for a batch to fill
    max_queue:       most items pending at once; beyond it requests get 503 overloaded
    max_items:       most texts (or pairs) in one request
    max_body_bytes:  largest request body
    max_text_chars:  longest single text, in characters (longer token counts are truncated, not
                     refused)
    warm_up:         run a batch-1 and a full batch before /readyz turns ready
    """

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 4096
    max_items: int = 256
    max_body_bytes: int = 1 << 20
    max_text_chars: int = 20_000
    warm_up: bool = True

    def batch_config(self) -> BatchConfig:
        return BatchConfig(self.max_batch_size, self.max_wait_ms, self.max_queue)


def _error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None, path: str = ""
) -> JSONResponse:
    """An error body: slimbert's {"kind", "message"}, or on /v2 routes the Open Inference
    Protocol's {"error": "message"} (what tritonclient reads)."""
    if path == "/v2" or path.startswith("/v2/"):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    return JSONResponse(
        {"error": {"kind": kind, "message": message}}, status_code=status, headers=headers
    )


class MetricsMiddleware:
    """Count every HTTP request by route, method and status, and time it to its last byte.

    Plain ASGI rather than BaseHTTPMiddleware, which costs a task per request. The route label is
    the matched route's template (/v2/models/{name}/infer, not the model's name); unknown paths
    share the label 'other' so that scanners cannot blow up the label set."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_and_record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            # the router records the matched route in the scope it was handed (this one)
            template = getattr(scope.get("route"), "path", None)
            route = template if template in ROUTES else "other"
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - began)


def create_app(model: ServedModel, config: ServeConfig = ServeConfig()) -> FastAPI:
    """An app serving `model`; its batcher starts and drains with the app's lifespan."""
    metrics = ServeMetrics()
    batcher = MicroBatcher(
        model.predict,
        config.batch_config(),
        on_batch=metrics.observe_batch,
        on_queue=metrics.queue.set,
    )
    identity = model.identity
    model_ref = {"name": identity.name, "sha256": identity.sha256}
    state = {"status": "starting"}

    async def warm_up() -> None:
        if config.warm_up:
            try:
                await batcher.run_exclusive(model.warm_up, config.max_batch_size)
            except Exception:  # stay alive and say so on /readyz, so the orchestrator replaces us
                log.exception("warm-up failed; /readyz will report warm_up_failed")
                state["status"] = "warm_up_failed"
                return
        if state["status"] == "warming":
            state["status"] = "ready"
            metrics.ready.set(1)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        state["status"] = "warming"
        metrics.model.info(
            {
                "name": identity.name,
                "sha256": identity.sha256,
                "provider": identity.provider,
                "task": identity.task,
            }
        )
        warming = asyncio.get_running_loop().create_task(warm_up())
        try:
            yield
        finally:
            state["status"] = "shutting_down"
            metrics.ready.set(0)
            await warming
            await batcher.close()

    app = FastAPI(
        title="slimbert serve",
        version=__version__,
        summary=f"{identity.name} ({identity.task}, {', '.join(identity.labels)}) on ONNX Runtime",
        lifespan=lifespan,
        responses={
            "4XX": {"model": ErrorBody, "description": "Bad input: the body says what was wrong."}
        },
    )
    app.state.model = model
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.config = config
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(exc.kind).inc()
        return _error(exc.status, exc.kind, exc.message, exc.headers, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            kind, message = (
                "not_found",
                f"no route {request.method} {request.url.path}; see /docs for the routes",
            )
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            kind, message = (
                "method_not_allowed",
                f"{request.method} is not allowed on {request.url.path}; use {allowed}",
            )
        else:
            kind, message = f"http_{exc.status_code}", str(exc.detail)
        metrics.errors.labels(kind).inc()
        return _error(exc.status_code, kind, message, exc.headers, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("invalid_request").inc()
        return _error(
            422,
            "invalid_request",
            str(exc.errors()[0].get("msg", "invalid request")),
            path=request.url.path,
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        metrics.errors.labels("internal").inc()
        return _error(
            500,
            "internal",
            f"{type(exc).__name__} while answering; the server logged it and keeps serving",
            path=request.url.path,
        )

    async def run(items: list[Item]) -> list[dict]:
        """Items through the batcher; overload, shutdown and a failed model call as ApiErrors."""
        try:
            return await batcher.submit(items)
        except Overloaded as exc:
            raise ApiError(
                503, "overloaded", f"{exc}; retry shortly", {"Retry-After": "1"}
            ) from None
        except ShuttingDown:
            if state["status"] == "shutting_down":
                raise ApiError(
                    503,
                    "shutting_down",
                    "the server is shutting down; retry on another replica",
                    {"Connection": "close"},
                ) from None
            raise ApiError(
                503, "not_ready", "the server is starting; retry shortly", {"Retry-After": "1"}
            ) from None
        except Exception as exc:  # the model call failed: this request fails, the server goes on
            log.exception("model call failed for a batch including this request")
            raise ApiError(
                500,
                "inference_failed",
                f"the model failed on this batch ({type(exc).__name__}); "
                "the server logged it and keeps serving",
            ) from None

    def count(predictions: list[dict]) -> None:
        metrics.items.inc(len(predictions))
        truncated = sum(p["truncated"] for p in predictions)
        if truncated:
            metrics.truncated.inc(truncated)

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
            }
        },
        responses={
            413: {"model": ErrorBody},
            415: {"model": ErrorBody},
            422: {"model": ErrorBody},
            503: {"model": ErrorBody},
        },
    )
    async def predict(request: Request):
        """Classify texts (or pairs). Inputs longer than the model's max_length are truncated and
        flagged in `truncated` and `warnings`."""
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in JSON_TYPES:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type {media_type or '(none)'!r}: send application/json",
            )
        body = await read_body(request, config.max_body_bytes)
        field, items = parse_predict(body, identity.inputs, config.max_items, config.max_text_chars)
        predictions = await run(items)
        warnings = [
            f"{field}[{index}]: truncated to the model's maximum of {identity.max_length} tokens"
            for index, prediction in enumerate(predictions)
            if prediction["truncated"]
        ]
        count(predictions)
        return JSONResponse({"model": model_ref, "predictions": predictions, "warnings": warnings})

    @app.get("/v1/model")
    async def model_info() -> dict:
        """The served model's identity and the server's limits."""
        return {
            **identity.to_dict(),
            "limits": {
                "max_items": config.max_items,
                "max_body_bytes": config.max_body_bytes,
                "max_text_chars": config.max_text_chars,
                "max_batch_size": config.max_batch_size,
                "max_wait_ms": config.max_wait_ms,
            },
        }

    @app.get("/healthz")
    async def healthz() -> dict:
        """Alive: the process answers."""
        return {"status": "alive"}

    @app.get(
        "/readyz", responses={503: {"description": "warming up, warm-up failed, or shutting down"}}
    )
    async def readyz():
        """Ready once the model is loaded and warmed up; 503 before that and while shutting down."""
        ready = state["status"] == "ready"
        return JSONResponse(
            {"status": state["status"], "model": model_ref}, status_code=200 if ready else 503
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text format: requests, latency, batch sizes, errors by kind."""
        return Response(metrics.render(), media_type=metrics.content_type)

    add_v2_routes(app, identity, config, state, run, count)
    return app


def add_v2_routes(
    app: FastAPI,
    identity: ModelIdentity,
    config: ServeConfig,
    state: dict,
    run: Callable[[list[Item]], Awaitable[list[dict]]],
    count: Callable[[list[dict]], None],
) -> None:
    """The Open Inference Protocol's routes (serve/oip.py), answering from the same model and
    batcher as /v1: `run` submits items to the batcher, `count` records them in the metrics."""

    def check_model(name: str, version: str | None = None) -> None:
        if name != identity.name:
            raise ApiError(
                404,
                "unknown_model",
                f"no model {name!r}; this server serves {identity.name!r}",
            )
        if version is not None and version != oip.VERSION:
            raise ApiError(
                404,
                "unknown_version",
                f"no version {version!r} of {name!r}; the only version is {oip.VERSION!r}",
            )

    def readiness() -> JSONResponse:
        ready = state["status"] == "ready"
        return JSONResponse(
            {"ready": ready, "status": state["status"]}, status_code=200 if ready else 503
        )

    @app.get("/v2", tags=["v2"])
    async def v2_server() -> dict:
        """Server metadata: name, version, protocol extensions."""
        return oip.server_metadata(__version__)

    @app.get("/v2/health/live", tags=["v2"])
    async def v2_live() -> dict:
        """Alive: the process answers."""
        return {"live": True}

    @app.get(
        "/v2/health/ready",
        tags=["v2"],
        responses={503: {"description": "warming up, warm-up failed, or shutting down"}},
    )
    async def v2_ready():
        """Ready once the model is loaded and warmed up; 503 before that and while shutting
        down."""
        return readiness()

    @app.get(V2_MODEL, tags=["v2"])
    @app.get(V2_VERSION, tags=["v2"])
    async def v2_model(name: str, version: str | None = None) -> dict:
        """Model metadata: the BYTES text inputs, the label/scores outputs, and in `parameters`
        the labels in score order."""
        check_model(name, version)
        return oip.model_metadata(identity)

    @app.get(V2_MODEL + "/ready", tags=["v2"])
    @app.get(V2_VERSION + "/ready", tags=["v2"])
    async def v2_model_ready(name: str, version: str | None = None):
        """The model is loaded and warm."""
        check_model(name, version)
        return readiness()

    @app.post(V2_MODEL + "/infer", tags=["v2"])
    @app.post(V2_VERSION + "/infer", tags=["v2"])
    async def v2_infer(request: Request, name: str, version: str | None = None) -> Response:
        """Inference request (JSON, or the binary tensor extension); the response follows the
        request's binary_data choices."""
        check_model(name, version)
        body = await read_body(request, config.max_body_bytes)
        infer = oip.parse_infer(
            body,
            request.headers.get(oip.HEADER_LENGTH),
            identity,
            config.max_items,
            config.max_text_chars,
        )
        predictions = await run(infer.items)
        count(predictions)
        payload, header_length = oip.render_infer(identity, infer, predictions)
        if header_length is None:
            return Response(payload, media_type="application/json")
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )
