"""Prometheus metrics of one app, in a registry of its own (not the process-wide default), so
two apps in one process (tests, or a server beside a load generator) never mix their counts."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """Requests by route and status, request latency, batch sizes and times, errors by kind."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "slimbert_requests",
            "HTTP requests answered, by route, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "slimbert_request_latency_seconds",
            "Time from request start to the last byte of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "slimbert_errors",
            "Requests answered with an error, by kind (invalid_json, empty_text, not_found, ...).",
            ["kind"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "slimbert_batch_size",
            "Items per model call.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_latency = Histogram(
            "slimbert_batch_seconds",
            "Tokenisation plus ONNX Runtime time per batch.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.items = Counter("slimbert_items", "Texts or pairs predicted.", registry=self.registry)
        self.truncated = Counter(
            "slimbert_truncated_items",
            "Texts or pairs cut to the model's max_length.",
            registry=self.registry,
        )
        self.queue = Gauge(
            "slimbert_queue_items", "Items waiting for a batch.", registry=self.registry
        )
        self.ready = Gauge(
            "slimbert_ready",
            "1 once the model is loaded and warmed up, 0 while warming or shutting down.",
            registry=self.registry,
        )
        self.model = Info("slimbert_model", "The model being served.", registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
