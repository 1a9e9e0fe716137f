"""The routes of `slimbert serve`, one function per protocol: slimbert's own /v1, the health and
metrics routes an orchestrator reads, and the Open Inference Protocol's /v2 (serve/oip.py). All
of them answer from one Service (serve/service.py).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from slimbert.serve import oip
from slimbert.serve.requests import (
    ApiError,
    ErrorBody,
    PredictRequest,
    PredictResponse,
    parse_predict,
    read_body,
)
from slimbert.serve.service import Service
from slimbert.version import __version__

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
NOT_READY = {503: {"description": "warming up, warm-up failed, or shutting down"}}


def add_v1_routes(app: FastAPI, service: Service) -> None:
    """POST /v1/predict and GET /v1/model."""
    identity, config = service.identity, service.config

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
        predictions = await service.run(items)
        warnings = [
            f"{field}[{index}]: truncated to the model's maximum of {identity.max_length} tokens"
            for index, prediction in enumerate(predictions)
            if prediction["truncated"]
        ]
        service.count(predictions)
        return JSONResponse(
            {"model": service.model_ref, "predictions": predictions, "warnings": warnings}
        )

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


def add_health_routes(app: FastAPI, service: Service) -> None:
    """GET /healthz, /readyz and /metrics."""

    @app.get("/healthz")
    async def healthz() -> dict:
        """Alive: the process answers."""
        return {"status": "alive"}

    @app.get("/readyz", responses=NOT_READY)
    async def readyz():
        """Ready once the model is loaded and warmed up; 503 before that and while shutting down."""
        return JSONResponse(
            {"status": service.status, "model": service.model_ref},
            status_code=200 if service.ready else 503,
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text format: requests, latency, batch sizes, errors by kind."""
        return Response(service.metrics.render(), media_type=service.metrics.content_type)


def add_v2_routes(app: FastAPI, service: Service) -> None:
    """The Open Inference Protocol's routes (serve/oip.py), answering from the same model and
    batcher as /v1."""
    identity, config = service.identity, service.config

    @app.get("/v2", tags=["v2"])
    async def v2_server() -> dict:
        """Server metadata: name, version, protocol extensions."""
        return oip.server_metadata(__version__)

    @app.get("/v2/health/live", tags=["v2"])
    async def v2_live() -> dict:
        """Alive: the process answers."""
        return {"live": True}

    @app.get("/v2/health/ready", tags=["v2"], responses=NOT_READY)
    async def v2_ready():
        """Ready once the model is loaded and warmed up; 503 before that and while shutting
        down."""
        return v2_readiness(service)

    @app.get(V2_MODEL, tags=["v2"])
    @app.get(V2_VERSION, tags=["v2"])
    async def v2_model(name: str, version: str | None = None) -> dict:
        """Model metadata: the BYTES text inputs, the label/scores outputs, and in `parameters`
        the labels in score order."""
        check_model(service, name, version)
        return oip.model_metadata(identity)

    @app.get(V2_MODEL + "/ready", tags=["v2"])
    @app.get(V2_VERSION + "/ready", tags=["v2"])
    async def v2_model_ready(name: str, version: str | None = None):
        """The model is loaded and warm."""
        check_model(service, name, version)
        return v2_readiness(service)

    @app.post(V2_MODEL + "/infer", tags=["v2"])
    @app.post(V2_VERSION + "/infer", tags=["v2"])
    async def v2_infer(request: Request, name: str, version: str | None = None) -> Response:
        """Inference request (JSON, or the binary tensor extension); the response follows the
        request's binary_data choices."""
        check_model(service, name, version)
        body = await read_body(request, config.max_body_bytes)
        infer = oip.parse_infer(
            body,
            request.headers.get(oip.HEADER_LENGTH),
            identity,
            config.max_items,
            config.max_text_chars,
        )
        predictions = await service.run(infer.items)
        service.count(predictions)
        payload, header_length = oip.render_infer(identity, infer, predictions)
        if header_length is None:
            return Response(payload, media_type="application/json")
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )


def check_model(service: Service, name: str, version: str | None = None) -> None:
    """A 404 naming the served model when a /v2 route asks for another model or version."""
    served = service.identity.name
    if name != served:
        raise ApiError(404, "unknown_model", f"no model {name!r}; this server serves {served!r}")
    if version is not None and version != oip.VERSION:
        raise ApiError(
            404,
            "unknown_version",
            f"no version {version!r} of {name!r}; the only version is {oip.VERSION!r}",
        )


def v2_readiness(service: Service) -> JSONResponse:
    """The /v2 readiness answer: 200 when ready, 503 otherwise, with the status either way."""
    return JSONResponse(
        {"ready": service.ready, "status": service.status},
        status_code=200 if service.ready else 503,
    )
