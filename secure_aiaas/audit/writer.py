"""Group commit: one writer thread turns many concurrent appends into few durable commits.

A request hands its record over and awaits a future that resolves only after the transaction
holding it has committed (fsync'd). Under load, every record waiting at that moment rides in
the same transaction, so durability costs one fsync per batch rather than per request.

The same thread signs a checkpoint of the chain head every ``checkpoint_every_records``
records or ``checkpoint_every_s`` seconds (whichever comes first, and only if something new
was written), and once more at shutdown.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secure_aiaas.audit.store import SqlAuditStore
from secure_aiaas.crypto.keystore import ServerKeys
from secure_aiaas.errors import AuditError
from secure_aiaas.types import AuditEvent

log = structlog.get_logger(__name__)

_STOP = object()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class AuditWriter:
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
    ) -> None:
        self.store = store
        self._keys = keys
        self._every_records = checkpoint_every_records
        self._every_s = checkpoint_every_s
        self._max_batch = max_batch
        self._timeout_s = timeout_s
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self.last_commit_ms = 0.0
        self._retired = dict(retired_public_keys or {})

    # -- the audit key, for exports and the published public key -------------------------
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

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Drain pending appends, sign a final checkpoint, stop the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        self._thread = None

    async def append(self, event: AuditEvent) -> int:
        """Durably record ``event``; returns its seq. Raises AuditError if it was not stored."""
        if self._thread is None:
            raise AuditError()
        future: Future[int] = Future()
        self._queue.put((event, future))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self._timeout_s * 2 + 1)
        except TimeoutError as exc:
            raise AuditError() from exc

    def append_blocking(self, event: AuditEvent) -> int:
        """Synchronous variant for CLI commands that record their own actions."""
        return self.store.append_batch([event])[0]

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=min(self._every_s, 1.0))
            except queue.Empty:
                self._maybe_checkpoint()
                continue
            batch: list[tuple[AuditEvent, Future[int]]] = []
            item: object = first
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    batch.append(item)  # type: ignore[arg-type]
                if stopping or len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._commit(batch)
            self._maybe_checkpoint(force=stopping)

    def _commit(self, batch: list[tuple[AuditEvent, Future[int]]]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        try:
            seqs = self.store.append_batch([event for event, _ in batch])
        except AuditError as exc:
            log.error("audit.append_failed", records=len(batch), error=type(exc.__cause__).__name__)
            for _, future in batch:
                if not future.cancelled():
                    future.set_exception(AuditError())
            return
        self.last_commit_ms = (time.perf_counter() - started) * 1000
        self._since_checkpoint += len(batch)
        for (_, future), seq in zip(batch, seqs, strict=True):
            if not future.cancelled():
                future.set_result(seq)

    def _maybe_checkpoint(self, *, force: bool = False) -> None:
        due = (
            self._since_checkpoint >= self._every_records
            or (self._since_checkpoint and time.monotonic() - self._last_checkpoint >= self._every_s)
        )
        if not (due or force):
            return
        try:
            checkpoint = self.store.write_checkpoint(
                self._keys.audit_signing_key, self._keys.audit_key_id, utc_now()
            )
        except AuditError:
            log.error("audit.checkpoint_failed")
            return
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        if checkpoint is not None:
            log.info("audit.checkpoint_signed", seq=checkpoint.seq)
