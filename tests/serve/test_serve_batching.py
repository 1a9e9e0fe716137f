"""MicroBatcher on its own: batches up to max_batch_size, drains on close, refuses past
max_queue, and survives a failing batch."""

from __future__ import annotations

import asyncio
import time

import pytest

from slimbert.serve import BatchConfig, MicroBatcher
from slimbert.serve.batching import Overloaded, ShuttingDown


def test_batcher_drains_on_close_and_then_refuses():
    seen = []

    def run_batch(items):
        time.sleep(0.02)
        seen.append(len(items))
        return [item * 10 for item in items]

    async def main():
        batcher = MicroBatcher(
            run_batch, BatchConfig(max_batch_size=4, max_wait_ms=50, max_queue=64)
        )
        batcher.start()
        requests = [asyncio.ensure_future(batcher.submit([i, i + 100])) for i in range(5)]
        await asyncio.sleep(0)  # let every request queue its items
        await batcher.close()
        results = await asyncio.gather(*requests)
        with pytest.raises(ShuttingDown):
            await batcher.submit([1])
        return results

    results = asyncio.run(main())
    assert results == [[i * 10, (i + 100) * 10] for i in range(5)]
    assert seen == [4, 4, 2]  # 10 items in batches of at most 4, none dropped


def test_batcher_refuses_past_max_queue_and_survives_a_failing_batch():
    def run_batch(items):
        if "bad" in items:
            raise ValueError("bad item")
        time.sleep(0.01)
        return items

    async def main():
        batcher = MicroBatcher(run_batch, BatchConfig(max_batch_size=2, max_wait_ms=0, max_queue=3))
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a", "b", "c"]))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit(["d", "e"])  # 3 pending + 2 > max_queue 3
        answered = await first
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit(["bad"])
        after = await batcher.submit(["f"])
        await batcher.close()
        return answered, after

    assert asyncio.run(main()) == (["a", "b", "c"], ["f"])
