"""Per-model dynamic batching: concurrent requests share one forward pass.

``await batcher.submit(x)`` queues `x` (one request, any number of rows) and returns that
request's rows of the batch output. One worker task per model collects requests until the
batch holds ``max_batch_size`` rows or the oldest request has waited ``max_delay_s``, then runs
the predictor in a dedicated thread so the event loop never blocks; while that pass runs, the
next batch fills. A full queue refuses at once with `OverloadedError` (503 + Retry-After).

The queue is ordered by priority (the calling tenant's, higher first; arrival order within a
priority): ``submit(x, priority=p)``, or the ``priority_of`` callable given at construction.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from secure_aiaas.errors import InferenceError, InputError, OverloadedError, ServiceError

if TYPE_CHECKING:
    from secure_aiaas.inference.predictor import Predictor

Outputs = dict[str, np.ndarray]
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One executed batch, for metrics hooks (no payload, by construction)."""

    model: str
    rows: int
    requests: int
    max_wait_s: float
    forward_s: float
    ok: bool


@dataclass(frozen=True)
class BatcherStats:
    """A snapshot for metrics and `/ready` (counts since start; latencies over a recent window)."""

    model: str
    max_batch_size: int
    max_delay_s: float
    max_queue_size: int
    queue_depth: int
    queue_rows: int
    requests_total: int
    rows_total: int
    batches_total: int
    rejected_total: int
    failed_total: int
    batch_rows: dict[int, int] = field(default_factory=dict)  # rows per batch -> count
    mean_batch_rows: float = 0.0
    wait_p50_s: float = 0.0
    wait_p99_s: float = 0.0
    forward_p50_s: float = 0.0
    forward_p99_s: float = 0.0


@dataclass(slots=True)
class _Request:
    item: Any
    rows: int
    enqueued: float
    future: asyncio.Future[Outputs]


# Heap entries: (-priority, arrival number, request): higher priority first, FIFO within one.
_Entry = tuple[int, int, _Request]


class DynamicBatcher:
    """Dynamic batcher for one loaded model.

    Args:
        predictor: the loaded model; `predict` runs in this batcher's worker thread.
        max_batch_size: rows per forward pass; ``1`` turns batching off.
        max_delay_s: how long the oldest queued request may wait for company; 0 (default)
            batches whatever queued while the previous pass ran (Triton's default too).
        max_queue_size: queued requests beyond which `submit` raises `OverloadedError`.
        on_batch: called on the event loop after every batch (metrics); must not raise.
        priority_of: the priority of a request submitted without one (the caller's tenant's).
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_batch_size: int = 64,
        max_delay_s: float = 0.0,
        max_queue_size: int = 1024,
        on_batch: Callable[[BatchRecord], None] | None = None,
        window: int = 2048,
        priority_of: Callable[[], int] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size, max_queue_size >= 1 and max_delay_s >= 0")
        self.predictor = predictor
        self.model_id = predictor.manifest.id
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue_size = max_queue_size
        self._on_batch = on_batch
        self._queue: list[_Entry] = []
        self._arrivals = itertools.count()
        self._priority_of = priority_of
        self._queue_rows = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self._waits: deque[float] = deque(maxlen=window)
        self._forwards: deque[float] = deque(maxlen=window)
        self._batch_rows: Counter[int] = Counter()
        self._requests = self._rows = self._batches = self._rejected = self._failed = 0
        self._forward_ema = 0.0
        self._last_batch_requests = 0

    # -- public API -----------------------------------------------------------------------

    async def submit(self, item: Any, *, priority: int | None = None) -> Outputs:
        """Queue one request and wait for its outputs (rows of `item`, in order).

        Higher ``priority`` is served first (default: ``priority_of()``, else 0).

        Raises:
            OverloadedError: the queue is full (at once, before any waiting).
            InputError: more rows than ``max_batch_size``.
            InferenceError: the forward pass failed (no internal detail).
        """
        if self._closing:
            raise OverloadedError("model is shutting down", retry_after=1.0)
        rows = self.predictor.rows(item)
        if rows < 1 or rows > self.max_batch_size:
            raise InputError(f"batch size must be 1..{self.max_batch_size}, got {rows}")
        if len(self._queue) >= self.max_queue_size:
            self._rejected += 1
            raise OverloadedError(retry_after=self._retry_after())
        if self._worker is None:
            self.start()
        loop = asyncio.get_running_loop()
        if priority is None:
            priority = self._priority_of() if self._priority_of is not None else 0
        request = _Request(item, rows, loop.time(), loop.create_future())
        heapq.heappush(self._queue, (-priority, next(self._arrivals), request))
        self._queue_rows += rows
        # Wake the worker only when it may act: first request, or a full batch is ready.
        if len(self._queue) == 1 or self._queue_rows >= self.max_batch_size:
            self._wakeup.set()
        return await request.future

    def start(self) -> None:
        """Start the worker task on the running loop (idempotent; `submit` calls it too)."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._run(), name=f"batcher-{self.model_id}"
            )

    async def close(self) -> None:
        """Refuse new requests, finish queued ones, stop the worker and its thread."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker
        self._executor.shutdown(wait=True)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def stats(self) -> BatcherStats:
        waits, forwards = sorted(self._waits), sorted(self._forwards)
        return BatcherStats(
            model=self.model_id,
            max_batch_size=self.max_batch_size,
            max_delay_s=self.max_delay_s,
            max_queue_size=self.max_queue_size,
            queue_depth=len(self._queue),
            queue_rows=self._queue_rows,
            requests_total=self._requests,
            rows_total=self._rows,
            batches_total=self._batches,
            rejected_total=self._rejected,
            failed_total=self._failed,
            batch_rows=dict(sorted(self._batch_rows.items())),
            mean_batch_rows=self._rows / self._batches if self._batches else 0.0,
            wait_p50_s=_percentile(waits, 0.50),
            wait_p99_s=_percentile(waits, 0.99),
            forward_p50_s=_percentile(forwards, 0.50),
            forward_p99_s=_percentile(forwards, 0.99),
        )

    # -- worker ---------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill(loop)
            batch = self._take(loop.time())
            if batch:
                await self._execute(loop, batch)

    async def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let the batch grow: to ``max_batch_size`` rows or the oldest request's delay.

        Requests that arrive while a pass runs join the next batch anyway, so waiting only pays
        when several callers are active: after a pass that served a single request (a lone
        caller) the worker does not wait, so serial traffic gets no added latency.
        """
        await asyncio.sleep(0)  # one loop turn: callers already runnable enqueue first
        if self.max_delay_s <= 0 or self._last_batch_requests <= 1:
            return
        deadline = self._queue[0][2].enqueued + self.max_delay_s
        while self._queue_rows < self.max_batch_size and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _take(self, now: float) -> list[_Request]:
        batch: list[_Request] = []
        rows = 0
        while self._queue and rows + self._queue[0][2].rows <= self.max_batch_size:
            request = heapq.heappop(self._queue)[2]
            self._queue_rows -= request.rows
            if request.future.done():  # the caller went away (cancelled): skip its rows
                continue
            batch.append(request)
            rows += request.rows
            self._waits.append(now - request.enqueued)
        return batch

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        items = [r.item for r in batch]
        rows = sum(r.rows for r in batch)
        started = time.perf_counter()
        ok = True
        try:
            outputs = await loop.run_in_executor(self._executor, self._forward, items)
        except Exception as exc:  # noqa: BLE001 (one failure answers the batch; we carry on)
            ok = False
            self._failed += len(batch)
            # The exception type only: messages may describe the (private) input.
            logger.error(
                "inference.batch_failed model=%s error=%s", self.model_id, type(exc).__name__
            )
            error = exc if isinstance(exc, ServiceError) else InferenceError()
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
        else:
            offset = 0
            for request in batch:
                end = offset + request.rows
                if not request.future.done():
                    request.future.set_result({k: v[offset:end] for k, v in outputs.items()})
                offset = end
        elapsed = time.perf_counter() - started
        self._forwards.append(elapsed)
        self._forward_ema = (
            elapsed if not self._forward_ema else 0.8 * self._forward_ema + 0.2 * elapsed
        )
        self._requests += len(batch)
        self._last_batch_requests = len(batch)
        self._rows += rows
        self._batches += 1
        self._batch_rows[rows] += 1
        if self._on_batch is not None:
            max_wait = max(self._waits[-i] for i in range(1, len(batch) + 1))
            record = BatchRecord(self.model_id, rows, len(batch), max_wait, elapsed, ok)
            try:
                self._on_batch(record)
            except Exception:  # a metrics bug must not stop the worker
                logger.exception("inference.on_batch_failed model=%s", self.model_id)

    def _forward(self, items: list[Any]) -> Outputs:
        return self.predictor.predict(self.predictor.collate(items))

    def _retry_after(self) -> float:
        """Seconds until the queue has drained, at the recent pass time; at least 1."""
        passes = math.ceil(max(self._queue_rows, 1) / self.max_batch_size)
        return float(max(1, math.ceil(passes * (self._forward_ema + self.max_delay_s))))


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
