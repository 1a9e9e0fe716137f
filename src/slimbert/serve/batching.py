"""Micro-batching: items from concurrent requests are run together, off the event loop.

    request A (1 item) ─┐
    request B (3 items) ├─▶ pending deque ─▶ batch ≤ max_batch_size ─▶ worker thread ─▶ futures
    request C (1 item) ─┘        │              (dispatch when full, or when the oldest
                                 │               pending item has waited max_wait_ms)
                                 └─ over max_queue items: Overloaded (the app answers 503)

One batch runs at a time in one worker thread; ONNX Runtime and the Rust tokenizer release the
GIL, so the event loop keeps accepting and parsing requests while a batch runs, and whatever
arrives meanwhile forms the next batch. A request with more items than max_batch_size is split
across batches. `close()` refuses new work and drains everything already accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BatchConfig:
    """max_batch_size: most items per model call.
    max_wait_ms:    longest the oldest pending item waits for the batch to fill; 0 = run what is
                    there.
    max_queue:      most items pending at once; beyond it new requests are refused (overload)."""

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 4096

    def __post_init__(self):
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size {self.max_batch_size}: must be ≥ 1")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms {self.max_wait_ms}: must be ≥ 0")
        if self.max_queue < self.max_batch_size:
            raise ValueError(
                f"max_queue {self.max_queue}: must be ≥ max_batch_size {self.max_batch_size}"
            )


class Overloaded(Exception):
    """More items are pending than max_queue allows."""


class ShuttingDown(Exception):
    """The batcher is closing and accepts no new work."""


class _Job:
    """One request's items; its future resolves when the last of them has a result."""

    __slots__ = ("future", "results", "remaining")

    def __init__(self, future: asyncio.Future, size: int):
        self.future = future
        self.results: list[Any] = [None] * size
        self.remaining = size


class MicroBatcher:
    """Collect items from concurrent `submit` calls into batches for `run_batch`.

    run_batch(items) -> results: synchronous, one result per item in order; it runs in the
    batcher's single worker thread. on_batch(size, seconds) is called on the event loop after
    each batch (metrics); on_queue(pending) whenever the pending count changes.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        config: BatchConfig = BatchConfig(),
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ):
        self.run_batch = run_batch
        self.config = config
        self.on_batch = on_batch or (lambda size, seconds: None)
        self.on_queue = on_queue or (lambda pending: None)
        self._pending: deque[tuple[_Job, int, Any, float]] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self.running:
            return
        self._closing = False
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slimbert-batch")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="slimbert-batcher")

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """Queue `items` and wait for their results, in order. Raises Overloaded or ShuttingDown."""
        if self._closing or not self.running:
            raise ShuttingDown("the server is shutting down")
        if len(self._pending) + len(items) > self.config.max_queue:
            raise Overloaded(
                f"{len(self._pending)} items already pending (limit {self.config.max_queue})"
            )
        loop = asyncio.get_running_loop()
        job = _Job(loop.create_future(), len(items))
        now = loop.time()
        for index, item in enumerate(items):
            self._pending.append((job, index, item, now))
        self.on_queue(len(self._pending))
        self._arrived.set()
        return await job.future

    async def run_exclusive(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) in the worker thread, between batches (warm-up shares the tokenizer)."""
        if not self.running:
            raise ShuttingDown("the batcher is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        """Refuse new work, finish every pending item, then stop the worker thread."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _wait_for_more(self, deadline: float) -> None:
        """Wait until the batch is full, the deadline passes, or close() is called."""
        loop = asyncio.get_running_loop()
        while len(self._pending) < self.config.max_batch_size and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[tuple[_Job, int, Any, float]]:
        batch = []
        while self._pending and len(batch) < self.config.max_batch_size:
            entry = self._pending.popleft()
            if entry[0].future.done():  # the client went away (request cancelled): skip its items
                continue
            batch.append(entry)
        self.on_queue(len(self._pending))
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            oldest = self._pending[0][3]
            await self._wait_for_more(oldest + self.config.max_wait_ms / 1000)
            batch = self._take_batch()
            if not batch:
                continue
            began = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._executor, self.run_batch, [entry[2] for entry in batch]
                )
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"run_batch returned {len(results)} results for {len(batch)} items"
                    )
            except Exception as exc:  # one bad batch fails its own requests, never the loop
                for job, _, _, _ in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self.on_batch(len(batch), time.perf_counter() - began)
            for (job, index, _, _), result in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                job.results[index] = result
                job.remaining -= 1
                if job.remaining == 0:
                    job.future.set_result(job.results)
