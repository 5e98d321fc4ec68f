"""Group commit: one writer thread turns many concurrent appends into few durable commits.

A request hands its record over and awaits a future that resolves only after the transaction
holding it has committed (fsync'd). Under load, every record waiting at that moment rides in
the same transaction, so durability costs one fsync per batch rather than per request.

The same thread signs a checkpoint of the chain head every ``checkpoint_every_records``
records or ``checkpoint_every_s`` seconds (whichever comes first, and only if something new
was written), and once more at shutdown.

The thread never dies of a bad record: whatever a batch raises fails only that batch's
callers (503), and a record the database refuses (a data error, not an outage) is retried
alone so it cannot take its neighbours down with it. While commits fail the writer reports
itself `failing` (readiness turns false, reads are refused before they start) and probes the
store with a small write every second until it can write again.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Protocol, TypedDict

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.exc import DBAPIError, OperationalError

from secure_aiaas.audit.store import SqlAuditStore, event_fields
from secure_aiaas.crypto.keystore import ServerKeys
from secure_aiaas.errors import AuditError
from secure_aiaas.types import AuditEvent

log = structlog.get_logger(__name__)

_STOP = object()

# Who waits for a record: a future of the caller's event loop, or (in the writer process,
# `writer_process`) a ticket number that ``on_settled`` reports back in bulk.
Waiter = asyncio.Future[int] | int
# Settled tickets, in one call per committed (or failed) batch: (ticket, seq or None).
OnSettled = Callable[[list[tuple[int, int | None]]], None]


class WriterOptions(TypedDict, total=False):
    """What both writers take besides the store and the keys (the settings' audit part)."""

    retired_public_keys: dict[str, Ed25519PublicKey] | None
    checkpoint_every_records: int
    checkpoint_every_s: float
    max_batch: int
    timeout_s: float


class AuditLog(Protocol):
    """The store's write side as the service uses it: `AuditWriter` (a thread of this
    process) or `AuditWriterProcess` (a process of its own)."""

    store: SqlAuditStore

    @property
    def key_id(self) -> str: ...
    @property
    def signing_key(self) -> Ed25519PrivateKey: ...
    def public_keys(self) -> dict[str, Ed25519PublicKey]: ...
    @property
    def alive(self) -> bool: ...
    @property
    def failing(self) -> bool: ...
    @property
    def last_commit_ms(self) -> float: ...
    def start(self) -> None: ...
    async def wait_started(self, timeout_s: float) -> bool: ...
    def close(self) -> None: ...
    async def ensure_writable(self) -> None: ...
    async def append(self, event: AuditEvent) -> int: ...


class _Probe:
    """A request for the writer thread to test the store now (shared by concurrent waiters)."""

    def __init__(self) -> None:
        self.future: Future[bool] = Future()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class AuditKeys:
    """The audit key as both writers expose it: for exports and the published public key."""

    def __init__(
        self, keys: ServerKeys, retired_public_keys: dict[str, Ed25519PublicKey] | None
    ) -> None:
        self._keys = keys
        self._retired = dict(retired_public_keys or {})

    @property
    def key_id(self) -> str:
        return self._keys.audit_key_id

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        """The audit key, for signing exports in this process (never serialised)."""
        return self._keys.audit_signing_key

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """The current audit public key plus retired ones handed in at construction."""
        return {**self._retired, self.key_id: self._keys.audit_public_key}


class AuditWriter(AuditKeys):
    """Owns the store's write side. Thread-safe; `append` is awaitable from any event loop."""

    def __init__(
        self,
        store: SqlAuditStore,
        keys: ServerKeys,
        *,
        checkpoint_every_records: int = 1000,
        checkpoint_every_s: float = 60.0,
        max_batch: int = 256,
        timeout_s: float = 2.0,
        retired_public_keys: dict[str, Ed25519PublicKey] | None = None,
        linger_s: float = 0.0003,
        on_settled: OnSettled | None = None,
    ) -> None:
        super().__init__(keys, retired_public_keys)
        self.store = store
        self._on_settled = on_settled
        self._every_records = checkpoint_every_records
        self._every_s = checkpoint_every_s
        self._max_batch = max_batch
        self._timeout_s = timeout_s
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._last_commit_ms = 0.0
        # The last write to the store failed (an outage, not one bad record).
        self._failing = False
        self._last_probe = 0.0
        self._probe: _Probe | None = None
        self._probe_lock = threading.Lock()
        self._linger_s = linger_s
        self._last_batch = 0

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def last_commit_ms(self) -> float:
        return self._last_commit_ms

    @property
    def failing(self) -> bool:
        """The store refused the last write: nothing new should start until it recovers."""
        return self._failing or not self.alive

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    async def wait_started(self, timeout_s: float) -> bool:
        """The thread writes as soon as it is started."""
        return self.alive

    def close(self) -> None:
        """Drain pending appends, sign a final checkpoint, stop the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        self._thread = None

    async def ensure_writable(self) -> None:
        """Return at once while the store takes writes; while it is known to be failing,
        have it probed now (one probe shared by every waiter) and raise AuditError unless
        it recovered: nothing should start that could not be recorded."""
        if not self.alive:
            raise AuditError()
        if not self._failing:
            return
        try:
            ok = await asyncio.wait_for(asyncio.wrap_future(self.probe()), self._timeout_s * 2 + 1)
        except TimeoutError as exc:
            raise AuditError() from exc
        if not ok:
            raise AuditError()

    def probe(self) -> Future[bool]:
        """Have the writer test the store now (one probe shared by concurrent askers);
        resolves True when the store took a write (or was not failing)."""
        with self._probe_lock:
            probe = self._probe
            if probe is None or probe.future.done():
                probe = self._probe = _Probe()
                self._queue.put(probe)
        return probe.future

    def submit(self, fields: dict[str, Any], ticket: int) -> None:
        """Queue a record already in stored form; ``on_settled`` reports ``ticket``."""
        self._queue.put((fields, ticket))

    async def append(self, event: AuditEvent) -> int:
        """Durably record ``event``; returns its seq. Raises AuditError if it was not stored."""
        if not self.alive:
            raise AuditError()
        fields = stored_form(event)
        # A future of the caller's own loop: the writer settles a whole batch's futures with
        # one call into each loop (`_resolve`), not one thread-safe wake-up per record.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        # A plain timer, not `asyncio.timeout` (which cost ~3 % of a whole request): if the
        # writer has not settled the future by then, the caller hears AuditError (a 503).
        expiry = loop.call_later(self._timeout_s * 2 + 1, expire, future)
        self._queue.put((fields, future))
        try:
            return await future
        finally:
            expiry.cancel()

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                if self._step():
                    return
            except Exception:  # noqa: BLE001 - the writer must outlive any bug in one step
                log.exception("audit.writer_step_failed")
                self._failing = True

    def _step(self) -> bool:
        """One round: a batch committed, or a checkpoint/probe while idle. True: stop."""
        try:
            item: object = self._queue.get(timeout=min(self._every_s, 1.0))
        except queue.Empty:
            self._probe_if_due()
            self._maybe_checkpoint()
            return False
        stopping = False
        batch: list[tuple[dict[str, Any], Waiter]] = []
        deadline = 0.0
        while True:
            if item is _STOP:
                stopping = True
            elif isinstance(item, _Probe):
                self._run_probe(item)
            else:
                batch.append(item)  # type: ignore[arg-type]
            if stopping or len(batch) >= self._max_batch:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                # Under concurrency the others are a few microseconds behind (their tasks are
                # being resumed by the commit that just ended): wait for them once, briefly,
                # rather than pay a whole fsync for a batch of one.
                if self._last_batch <= len(batch) or self._linger_s <= 0:
                    break
                now = time.monotonic()
                deadline = deadline or now + self._linger_s
                if now >= deadline:
                    break
                try:
                    item = self._queue.get(timeout=deadline - now)
                except queue.Empty:
                    break
        self._last_batch = len(batch)
        try:
            self._commit(batch)
        except BaseException:
            self._failing = True  # before the callers hear of it: they may look at once
            self._fail([waiter for _, waiter in batch])  # none left waiting on a dead batch
            raise
        self._maybe_checkpoint(force=stopping)
        return stopping

    def _commit(self, batch: list[tuple[dict[str, Any], Waiter]]) -> None:
        if not batch:
            return
        rows = [fields for fields, _ in batch]
        waiters = [waiter for _, waiter in batch]
        started = time.perf_counter()
        try:
            seqs = self.store.append_rows(rows)
        except AuditError as exc:
            if len(rows) > 1 and not _is_outage(exc):
                # The database refused something in the batch, not the batch: find it.
                for row, waiter in zip(rows, waiters, strict=True):
                    self._commit_rows([row], [waiter])
                return
            self._failing = self._failing or _is_outage(exc)
            log.error("audit.append_failed", records=len(rows), error=type(exc.__cause__).__name__)
            self._fail(waiters)
            return
        self._committed(started, seqs, waiters)

    def _commit_rows(self, rows: list[dict[str, Any]], waiters: list[Waiter]) -> None:
        started = time.perf_counter()
        try:
            seqs = self.store.append_rows(rows)
        except AuditError as exc:
            self._failing = self._failing or _is_outage(exc)
            log.error("audit.append_failed", records=len(rows), error=type(exc.__cause__).__name__)
            self._fail(waiters)
            return
        self._committed(started, seqs, waiters)

    def _committed(self, started: float, seqs: list[int], waiters: list[Waiter]) -> None:
        self._failing = False
        self._last_commit_ms = (time.perf_counter() - started) * 1000
        self._since_checkpoint += len(seqs)
        self._resolve(list(zip(waiters, seqs, strict=True)))

    def _fail(self, waiters: Sequence[Waiter]) -> None:
        self._resolve([(waiter, None) for waiter in waiters])

    def _resolve(self, outcomes: Sequence[tuple[Waiter, int | None]]) -> None:
        """Hand each caller its seq (None: AuditError), from the writer thread: one call
        into each caller's event loop per batch, one ``on_settled`` for the tickets."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | None]]]
        by_loop = {}
        tickets: list[tuple[int, int | None]] = []
        for waiter, seq in outcomes:
            if isinstance(waiter, int):
                tickets.append((waiter, seq))
            else:
                by_loop.setdefault(waiter.get_loop(), []).append((waiter, seq))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(settle, settled)
            except RuntimeError:
                pass  # that loop has closed: nobody awaits its futures any more
        if tickets and self._on_settled is not None:
            self._on_settled(tickets)

    def _probe_if_due(self) -> None:
        """While failing, try a small write every second: recovery needs no request."""
        if not self._failing or time.monotonic() - self._last_probe < 1.0:
            return
        self._probe_now()

    def _run_probe(self, probe: _Probe) -> None:
        ok = not self._failing or self._probe_now()
        if not probe.future.done():
            probe.future.set_result(ok)

    def _probe_now(self) -> bool:
        self._last_probe = time.monotonic()
        if self.store.probe_write():
            if self._failing:
                log.info("audit.store_recovered")
            self._failing = False
            return True
        return False

    def _maybe_checkpoint(self, *, force: bool = False) -> None:
        due = self._since_checkpoint >= self._every_records or (
            self._since_checkpoint and time.monotonic() - self._last_checkpoint >= self._every_s
        )
        if not (due or force):
            return
        try:
            checkpoint = self.store.write_checkpoint(
                self._keys.audit_signing_key, self._keys.audit_key_id, utc_now()
            )
        except AuditError as exc:
            self._failing = self._failing or _is_outage(exc)
            log.error("audit.checkpoint_failed")
            return
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        if checkpoint is not None:
            log.info("audit.checkpoint_signed", seq=checkpoint.seq)


def stored_form(event: AuditEvent) -> dict[str, Any]:
    """`event_fields`, whose contract is never to raise; should it, the record is refused
    (AuditError: the request gets 503), never stored half-formed."""
    try:
        return event_fields(event)
    except Exception as exc:  # noqa: BLE001 - an unstorable event fails alone
        log.exception("audit.event_unstorable")
        raise AuditError() from exc


def expire(future: asyncio.Future[int]) -> None:
    """A waiter's timer ran out: it hears AuditError (a 503) unless already settled."""
    if not future.done():
        future.set_exception(AuditError())


def settle(outcomes: Iterable[tuple[asyncio.Future[int], int | None]]) -> None:
    """In the caller's loop: results for those still waiting (a timed-out one is done);
    a seq of None is AuditError."""
    for future, seq in outcomes:
        if future.done():
            continue
        if seq is None:
            future.set_exception(AuditError())
        else:
            future.set_result(seq)


def _is_outage(exc: BaseException) -> bool:
    """The store itself is unavailable (locked, unreachable, full), not one record's fault."""
    cause = exc.__cause__
    return isinstance(cause, OperationalError) or (
        isinstance(cause, DBAPIError) and bool(cause.connection_invalidated)
    )
