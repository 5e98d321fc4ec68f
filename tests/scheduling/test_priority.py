"""Priority queues: the plaintext batcher and the HE pool serve higher priorities first
(arrival order within one), keep their bounds, and refuse at once when full."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from secure_aiaas.errors import OverloadedError
from secure_aiaas.he import HELimits, HEPool
from secure_aiaas.inference import DynamicBatcher
from secure_aiaas.scheduling import current_priority, set_priority


@dataclass
class _Manifest:
    id: str = "gated:1"


class GatedPredictor:
    """A predictor that records what it served and holds its first pass until released."""

    manifest = _Manifest()

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.served: list[str] = []

    def rows(self, item: Any) -> int:
        return 1

    def collate(self, items: list[Any]) -> list[Any]:
        return items

    def predict(self, batch: list[str]) -> dict[str, np.ndarray]:
        self.gate.wait(10)
        self.served.extend(batch)
        return {"out": np.zeros(len(batch))}


async def _queued(batcher: DynamicBatcher, count: int) -> None:
    while batcher.queue_depth < count:
        await asyncio.sleep(0.001)


def test_batcher_serves_higher_priority_first_fifo_within() -> None:
    async def scenario() -> list[str]:
        predictor = GatedPredictor()
        batcher = DynamicBatcher(
            predictor,
            max_batch_size=1,
            max_queue_size=16,  # type: ignore[arg-type]
            priority_of=current_priority,
        )
        first = asyncio.create_task(batcher.submit("first"))
        await asyncio.sleep(0.05)  # the worker holds "first" in the gated pass
        tasks = [first]
        for name, prio in [("low-1", 0), ("low-2", 0), ("high-1", 5), ("mid", 2), ("high-2", 5)]:
            tasks.append(asyncio.create_task(batcher.submit(name, priority=prio)))
        # Through the context variable, as requests do (a task copies its context).
        set_priority(9)
        tasks.append(asyncio.create_task(batcher.submit("ctx-9")))
        set_priority(0)
        await _queued(batcher, 6)
        predictor.gate.set()
        await asyncio.gather(*tasks)
        await batcher.close()
        return predictor.served

    assert asyncio.run(scenario()) == [
        "first",
        "ctx-9",
        "high-1",
        "high-2",
        "mid",
        "low-1",
        "low-2",
    ]


def test_batcher_full_queue_refuses_high_priority_too() -> None:
    async def scenario() -> None:
        predictor = GatedPredictor()
        batcher = DynamicBatcher(predictor, max_batch_size=1, max_queue_size=2)  # type: ignore[arg-type]
        tasks = [asyncio.create_task(batcher.submit("first"))]
        await asyncio.sleep(0.05)
        tasks += [asyncio.create_task(batcher.submit(f"q{i}")) for i in range(2)]
        await _queued(batcher, 2)
        # The bound holds for every priority: no waiting, refused at once.
        with pytest.raises(OverloadedError):
            await batcher.submit("urgent", priority=100)
        predictor.gate.set()
        await asyncio.gather(*tasks)
        await batcher.close()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def he_pool(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pool = HEPool(
        store_dir=tmp_path_factory.mktemp("he"),
        workers=1,
        limits=HELimits(max_pending=5),
        priority_of=current_priority,
    )
    pool.start()
    yield pool
    pool.close()


def test_he_pool_serves_higher_priority_first(he_pool: HEPool) -> None:
    finished: list[str] = []
    seen: list[tuple[str, float, float]] = []
    he_pool._on_call = lambda task, wait, run: seen.append((task, wait, run))

    async def one(name: str, seconds: float, priority: int) -> None:
        await he_pool.call(time.sleep, seconds, priority=priority)
        finished.append(name)

    async def scenario() -> None:
        first = asyncio.create_task(one("first", 0.5, 0))
        await asyncio.sleep(0.1)  # "first" holds the only worker
        rest = [
            asyncio.create_task(one(n, 0.01, p))
            for n, p in [("low-1", 0), ("low-2", 0), ("high", 3), ("mid", 1)]
        ]
        await asyncio.sleep(0.05)
        assert he_pool.stats()["waiting"] == 4
        # max_pending (5) reached: the next call is refused at once, whatever its priority.
        with pytest.raises(OverloadedError):
            await he_pool.call(time.sleep, 0, priority=100)
        await asyncio.gather(first, *rest)

    rejected = he_pool.rejected
    asyncio.run(scenario())
    assert finished == ["first", "high", "mid", "low-1", "low-2"]
    assert he_pool.rejected == rejected + 1
    assert [task for task, _, _ in seen] == ["sleep"] * 5
    stats = he_pool.stats()
    assert stats["running"] == 0 and stats["waiting"] == 0 and stats["pending"] == 0


def test_he_pool_cancelled_waiter_does_not_leak_a_slot(he_pool: HEPool) -> None:
    async def scenario() -> None:
        first = asyncio.create_task(he_pool.call(time.sleep, 0.3))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(he_pool.call(time.sleep, 0))
        await asyncio.sleep(0.05)
        waiting.cancel()  # the caller went away while queued
        await first
        await asyncio.wait_for(he_pool.call(time.sleep, 0), timeout=10)

    asyncio.run(scenario())
    stats = he_pool.stats()
    assert stats["running"] == 0 and stats["waiting"] == 0 and stats["pending"] == 0
