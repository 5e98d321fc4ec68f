"""Worker slots handed out in priority order (higher first, arrival order within one).

The HE pool runs at most one call per worker process; callers beyond that wait here rather
than in the executor's FIFO queue, so a tenant's priority decides who runs next. Safe across
threads and event loops (`HEPool.call_sync` runs its own loop).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading


class PrioritySlots:
    """``capacity`` slots; `acquire` waits for one behind higher-priority callers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.running = 0
        self._lock = threading.Lock()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(1 for _, _, w in self._waiters if not w.done())

    async def acquire(self, priority: int) -> None:
        """A slot: at once if one is free and nobody waits, else in priority order."""
        with self._lock:
            if self.running < self.capacity and not self._waiters:
                self.running += 1
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (-priority, next(self._arrivals), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as we were cancelled: pass the slot on
            raise

    def release(self) -> None:
        """Hand the slot to the highest-priority caller still waiting, else free it."""
        with self._lock:
            while self._waiters:
                _, _, waiter = heapq.heappop(self._waiters)
                if waiter.done():
                    continue  # cancelled while waiting
                loop = waiter.get_loop()
                if loop.is_closed():
                    continue
                loop.call_soon_threadsafe(self._grant, waiter)
                return
            self.running -= 1

    def _grant(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():  # cancelled after it was chosen: the slot goes to the next one
            self.release()
        else:
            waiter.set_result(None)
