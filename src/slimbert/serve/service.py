"""What the routes of `slimbert serve` answer from: the served model, the batcher every request
joins, the app's metrics, the limits a request must keep, and where the server is in its life
(starting, warming, ready, warm_up_failed, shutting_down).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slimbert.serve.batching import BatchConfig, MicroBatcher, Overloaded, ShuttingDown
from slimbert.serve.metrics import ServeMetrics
from slimbert.serve.model import Item, ServedModel
from slimbert.serve.requests import ApiError

log = logging.getLogger("slimbert.serve")


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


class Service:
    """One app's model, batcher, metrics and limits, and its status; every protocol's routes
    submit their items through `run`, so /v1 and /v2 requests join the same batches."""

    def __init__(self, model: ServedModel, config: ServeConfig):
        self.model = model
        self.identity = model.identity
        self.config = config
        self.metrics = ServeMetrics()
        self.batcher = MicroBatcher(
            model.predict,
            config.batch_config(),
            on_batch=self.metrics.observe_batch,
            on_queue=self.metrics.queue.set,
        )
        self.status = "starting"
        self.model_ref = {"name": self.identity.name, "sha256": self.identity.sha256}

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    async def warm_up(self) -> None:
        """Run the warm-up batches (when configured), then turn ready unless shutting down."""
        if self.config.warm_up:
            try:
                await self.batcher.run_exclusive(self.model.warm_up, self.config.max_batch_size)
            except Exception:  # stay alive and say so on /readyz, so the orchestrator replaces us
                log.exception("warm-up failed; /readyz will report warm_up_failed")
                self.status = "warm_up_failed"
                return
        if self.status == "warming":
            self.status = "ready"
            self.metrics.ready.set(1)

    async def run(self, items: list[Item]) -> list[dict]:
        """Items through the batcher; overload, shutdown and a failed model call as ApiErrors."""
        try:
            return await self.batcher.submit(items)
        except Overloaded as exc:
            raise ApiError(
                503, "overloaded", f"{exc}; retry shortly", {"Retry-After": "1"}
            ) from None
        except ShuttingDown:
            if self.status == "shutting_down":
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

    def count(self, predictions: list[dict]) -> None:
        """Record answered items (and the truncated among them) in the metrics."""
        self.metrics.items.inc(len(predictions))
        truncated = sum(p["truncated"] for p in predictions)
        if truncated:
            self.metrics.truncated.inc(truncated)
