"""Dynamic batching with the real digits model: shared forward passes, bounded queue."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from secure_aiaas.errors import InferenceError, InputError, OverloadedError
from secure_aiaas.inference import BatchRecord, DynamicBatcher

pytestmark = pytest.mark.anyio


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 17, size=(n, 64)).astype(np.float32)


async def test_concurrent_requests_share_forward_passes(digits) -> None:  # type: ignore[no-untyped-def]
    records: list[BatchRecord] = []
    batcher = DynamicBatcher(digits, max_batch_size=32, max_delay_s=0.05, on_batch=records.append)
    inputs = [_rows(1 + i % 3, seed=i) for i in range(64)]
    try:
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
    finally:
        await batcher.close()
    stats = batcher.stats()
    assert stats.requests_total == 64
    assert stats.batches_total < 64
    assert max(stats.batch_rows) > 1
    assert all(rows <= 32 for rows in stats.batch_rows)
    assert sum(r.rows for r in records) == stats.rows_total == sum(len(x) for x in inputs)
    # Every caller gets exactly its own rows back, in order.
    for x, out in zip(inputs, results, strict=True):
        expected = digits.predict(x)
        assert out["logits"].shape == (len(x), 10)
        np.testing.assert_allclose(out["logits"], expected["logits"], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out["label"], expected["label"])


async def test_batching_off_runs_one_request_per_pass(digits) -> None:  # type: ignore[no-untyped-def]
    batcher = DynamicBatcher(digits, max_batch_size=1, max_delay_s=0.0)
    try:
        await asyncio.gather(*(batcher.submit(_rows(1, seed=i)) for i in range(10)))
    finally:
        await batcher.close()
    assert batcher.stats().batch_rows == {1: 10}


async def test_full_queue_refuses_at_once(digits) -> None:  # type: ignore[no-untyped-def]
    batcher = DynamicBatcher(digits, max_batch_size=4, max_delay_s=0.05, max_queue_size=3)
    try:
        # Tasks run in creation order before the worker gets a turn: 3 fill the queue.
        tasks = [asyncio.create_task(batcher.submit(_rows(1, seed=i))) for i in range(4)]
        await asyncio.sleep(0)
        refused = tasks[3]
        assert refused.done()
        error = refused.exception()
        assert isinstance(error, OverloadedError)
        assert error.retry_after >= 1
        assert batcher.stats().batches_total == 0  # refused before any pass ran
        assert batcher.stats().rejected_total == 1
        outputs = await asyncio.gather(*tasks[:3])
        assert [o["label"].shape for o in outputs] == [(1,)] * 3
        await batcher.submit(_rows(1))  # room again once the queue drained
    finally:
        await batcher.close()


async def test_oversized_request_is_an_input_error(digits) -> None:  # type: ignore[no-untyped-def]
    batcher = DynamicBatcher(digits, max_batch_size=8)
    try:
        with pytest.raises(InputError, match="batch size"):
            await batcher.submit(_rows(9))
    finally:
        await batcher.close()


async def test_failed_pass_answers_its_batch_and_the_batcher_carries_on(digits) -> None:  # type: ignore[no-untyped-def]
    batcher = DynamicBatcher(digits, max_batch_size=8, max_delay_s=0.0)
    try:
        with pytest.raises(InferenceError) as caught:
            await batcher.submit(np.zeros((2, 63), dtype=np.float32))  # torch rejects the shape
        assert "63" not in caught.value.public_message  # no internal detail leaks
        out = await batcher.submit(_rows(2))
        assert out["probabilities"].shape == (2, 10)
    finally:
        await batcher.close()
    assert batcher.stats().failed_total == 1


async def test_cancelled_callers_do_not_disturb_others(digits) -> None:  # type: ignore[no-untyped-def]
    batcher = DynamicBatcher(digits, max_batch_size=16, max_delay_s=0.05)
    try:
        tasks = [asyncio.create_task(batcher.submit(_rows(1, seed=i))) for i in range(6)]
        await asyncio.sleep(0)
        tasks[2].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await batcher.close()
    assert isinstance(done[2], asyncio.CancelledError)
    assert all(isinstance(d, dict) for i, d in enumerate(done) if i != 2)
    assert batcher.stats().rows_total == 5


async def test_close_drains_then_refuses(digits) -> None:  # type: ignore[no-untyped-def]
    batcher = DynamicBatcher(digits, max_batch_size=4, max_delay_s=0.05)
    pending = asyncio.create_task(batcher.submit(_rows(1)))
    await asyncio.sleep(0)
    await batcher.close()
    assert (await pending)["label"].shape == (1,)
    with pytest.raises(OverloadedError):
        await batcher.submit(_rows(1))


async def test_event_loop_keeps_running_during_a_pass(text_embed) -> None:  # type: ignore[no-untyped-def]
    batcher = DynamicBatcher(text_embed, max_batch_size=64, max_delay_s=0.0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    try:
        await batcher.submit(["a fairly long sentence to keep the encoder busy"] * 64)
    finally:
        tick_task.cancel()
        await batcher.close()
    assert ticks > 10  # the loop ran other tasks while the forward pass was in its thread


async def test_a_failing_metrics_hook_does_not_stop_the_worker(digits) -> None:  # type: ignore[no-untyped-def]
    def broken(record: BatchRecord) -> None:
        raise RuntimeError("metrics backend down")

    batcher = DynamicBatcher(digits, max_batch_size=4, on_batch=broken)
    try:
        for seed in range(3):
            assert (await batcher.submit(_rows(1, seed)))["label"].shape == (1,)
    finally:
        await batcher.close()
    assert batcher.stats().batches_total == 3
