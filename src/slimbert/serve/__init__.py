"""`slimbert serve`: an HTTP inference service over an export folder, on ONNX Runtime.

model.py     ServedModel: tokenizer + ONNX session + identity (name, sha256 of model.onnx)
batching.py  MicroBatcher: concurrent requests -> batches, run in one worker thread
metrics.py   ServeMetrics: a Prometheus registry per app
requests.py  what /v1/predict accepts and answers; bad input as one ApiError (kind, message)
app.py       create_app: the FastAPI routes, the metrics middleware, errors as JSON
"""

from slimbert.serve.app import ServeConfig, create_app
from slimbert.serve.batching import BatchConfig, MicroBatcher
from slimbert.serve.model import Item, ServedModel

__all__ = ["BatchConfig", "Item", "MicroBatcher", "ServeConfig", "ServedModel", "create_app"]
