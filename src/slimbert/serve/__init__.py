"""`slimbert serve`: an HTTP inference service over an export folder, on ONNX Runtime.

folder.py    what an export folder says (manifest, labels, max_length) and its tokenizer; any
             ONNX sequence-classification folder is read too, with a warning
model.py     ServedModel: tokenizer + ONNX session + identity (name, sha256 of model.onnx); also
             what `slimbert.load` predicts with
batching.py  MicroBatcher: concurrent requests -> batches, run in one worker thread
metrics.py   ServeMetrics: a Prometheus registry per app
requests.py  what /v1/predict accepts and answers; bad input as one ApiError (kind, message)
oip.py       the Open Inference Protocol (v2) requests and responses: JSON and binary tensors
service.py   ServeConfig (batching and input limits) and the Service every route answers from
routes.py    the routes, one function per protocol: /v1, health and metrics, /v2 (OIP)
app.py       create_app: the app's lifespan, the metrics middleware, errors as JSON

The names below load on first use: `slimbert.load` needs model.py only, and must not pay for
FastAPI (the serve extra) or require it.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BatchConfig": "slimbert.serve.batching",
    "MicroBatcher": "slimbert.serve.batching",
    "Item": "slimbert.serve.model",
    "ServedModel": "slimbert.serve.model",
    "ServeConfig": "slimbert.serve.service",
    "create_app": "slimbert.serve.app",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'slimbert.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
