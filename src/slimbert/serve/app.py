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
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from slimbert.serve.metrics import ServeMetrics
from slimbert.serve.model import ServedModel
from slimbert.serve.requests import ApiError, ErrorBody
from slimbert.serve.routes import ROUTES, add_health_routes, add_v1_routes, add_v2_routes
from slimbert.serve.service import ServeConfig, Service
from slimbert.version import __version__

__all__ = ["ServeConfig", "create_app"]


def create_app(model: ServedModel, config: ServeConfig = ServeConfig()) -> FastAPI:
    """An app serving `model`; its batcher starts and drains with the app's lifespan."""
    service = Service(model, config)
    identity, metrics = service.identity, service.metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        service.status = "warming"
        metrics.model.info(
            {
                "name": identity.name,
                "sha256": identity.sha256,
                "provider": identity.provider,
                "task": identity.task,
            }
        )
        warming = asyncio.get_running_loop().create_task(service.warm_up())
        try:
            yield
        finally:
            service.status = "shutting_down"
            metrics.ready.set(0)
            await warming
            await service.batcher.close()

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
    app.state.batcher = service.batcher
    app.state.metrics = metrics
    app.state.config = config
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    add_error_handlers(app, metrics)
    add_v1_routes(app, service)
    add_health_routes(app, service)
    add_v2_routes(app, service)
    return app


def add_error_handlers(app: FastAPI, metrics: ServeMetrics) -> None:
    """Every error as JSON naming its kind, counted by kind in the metrics."""

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
