"""The audit writer in a process of its own, so that its work never holds the server's GIL.

`AuditWriter`'s thread shares the interpreter lock with the event loop: the chain's hashing,
the rows and SQLite's calls between fsyncs all take turns with request handling, and under
load the loop idles while the writer runs. Here the same `AuditWriter` runs in a child
process; the server's side (`AuditWriterProcess`, on the event loop) keeps the contract:

* ``append`` resolves only after the record's transaction committed, in the child;
* records of one event-loop step leave in one frame (one system call), acknowledgements of
  one committed batch come back in one frame, read by the loop's own reader callback;
* fail closed: while the child is starting, failing or gone, ``alive``/``failing`` say so
  (readiness false, requests 503); a child that dies fails every record it had not
  acknowledged (their requests get 503: such a record may be stored, never a 200 without
  one) and is started again; the chain resumes from the store's head;
* the child ends when its input closes (the server exits, even by ``kill -9``): it commits
  what it received and signs a last checkpoint.

Frames both ways: a 4-byte little-endian length, then a pickle (both ends are this code, on
a pipe only they hold). Server → child: ``("config", WriterConfig)`` first, then ``("append",
[(ticket, stored fields), ...])`` and ``("probe", ticket)``. Child → server: ``("ready",)``,
``("settled", [(ticket, seq or None), ...], failing, last_commit_ms)``, ``("probe", ticket,
ok)`` and ``("status", failing, last_commit_ms)`` when the store's state changes.

    python -m secure_aiaas.audit.writer_process READ_FD WRITE_FD   (started by the server)
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secure_aiaas.audit.store import SqlAuditStore
from secure_aiaas.audit.writer import AuditKeys, AuditWriter, expire, settle, stored_form
from secure_aiaas.crypto.keystore import ServerKeys
from secure_aiaas.errors import AuditError
from secure_aiaas.types import AuditEvent

log = structlog.get_logger(__name__)

_HEADER = struct.Struct("<I")
# A frame larger than this is a broken stream, not a batch (256 records of bounded fields).
_MAX_FRAME = 64 << 20
# A child that died is started again after this long (doubling to the cap while it keeps dying).
_RESTART_S = (0.2, 5.0)


def _frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class _Frames:
    """Splits a byte stream into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        buffer += data
        messages = []
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, offset)
            if size > _MAX_FRAME:
                raise ValueError("audit writer stream is corrupt")
            end = offset + _HEADER.size + size
            if len(buffer) < end:
                break
            messages.append(pickle.loads(buffer[offset + _HEADER.size : end]))
            offset = end
        del buffer[:offset]
        return messages


@dataclass(frozen=True)
class WriterConfig:
    """What the child needs to open the store and run `AuditWriter` as the server would."""

    audit_url: str
    # The raw Ed25519 private key: crosses only the private pipe, never in a repr.
    audit_signing_key: bytes = field(repr=False)
    checkpoint_every_records: int
    checkpoint_every_s: float
    max_batch: int
    timeout_s: float
    log_level: str
    json_logs: bool


class AuditWriterProcess(AuditKeys):
    """`AuditWriter`'s interface (`AuditLog`), the writing done by a child process.

    Bound to the event loop that calls `start` (the server's); ``append`` from another
    loop is handed over to that one.
    """

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
        log_level: str = "INFO",
        json_logs: bool = True,
    ) -> None:
        super().__init__(keys, retired_public_keys)
        self.store = store  # this process's reads (queries, exports, readiness)
        self._timeout_s = timeout_s
        self._config = WriterConfig(
            audit_url=store.url,
            audit_signing_key=keys.audit_signing_key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            ),
            checkpoint_every_records=checkpoint_every_records,
            checkpoint_every_s=checkpoint_every_s,
            max_batch=max_batch,
            timeout_s=timeout_s,
            log_level=log_level,
            json_logs=json_logs,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._to_child = -1
        self._from_child = -1
        self._frames = _Frames()
        self._unsent = bytearray()
        self._outbox: list[tuple[int, dict[str, Any]]] = []
        self._flush_scheduled = False
        self._tickets = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._probes: dict[int, asyncio.Future[bool]] = {}
        self._failing = False
        self._last_commit_ms = 0.0
        self._closing = False
        self._restart_s = _RESTART_S[0]
        self._restart: asyncio.TimerHandle | None = None
        self._writer_armed = False
        # Set once the child has opened the store, cleared when it is lost.
        self._started = asyncio.Event()

    @property
    def pid(self) -> int | None:
        """The child's process id (None while there is none)."""
        return self._child.pid if self._child is not None else None

    @property
    def alive(self) -> bool:
        return self._child is not None and self._started.is_set()

    @property
    def failing(self) -> bool:
        return self._failing or not self.alive

    @property
    def last_commit_ms(self) -> float:
        return self._last_commit_ms

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the child (it is `alive` once it has opened the store: readiness waits)."""
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._spawn()

    async def wait_started(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until the child has opened the store; False if not
        yet (it stays not `alive`, so requests meanwhile get 503)."""
        if self._loop is None:
            return False  # never started
        try:
            await asyncio.wait_for(self._started.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Hand over what is queued, close the child's input (it commits, checkpoints and
        exits) and wait for it."""
        self._closing = True
        if self._restart is not None:
            self._restart.cancel()
        child = self._child
        if child is None:
            return
        if self._outbox:
            self._unsent += _frame(("append", self._outbox))
            self._outbox = []
        try:
            os.set_blocking(self._to_child, True)
            while self._unsent:
                del self._unsent[: os.write(self._to_child, self._unsent)]
        except OSError:
            pass  # it is gone: its exit is all there is to wait for
        self._disconnect()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        self._lost("closed")

    def _spawn(self) -> None:
        self._restart = None
        if self._closing:
            return
        down_r, down_w = os.pipe()  # server → child
        up_r, up_w = os.pipe()  # child → server
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "secure_aiaas.audit.writer_process", str(down_r), str(up_w)],
                pass_fds=(down_r, up_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # its log lines go to stderr, as ours
            )
        except OSError:
            os.close(down_w)
            os.close(up_r)
            log.exception("audit.writer_process_not_started")
            self._schedule_restart()
            return
        finally:
            os.close(down_r)  # the child's ends: it holds its own copies
            os.close(up_w)
        self._to_child, self._from_child = down_w, up_r
        os.set_blocking(down_w, False)
        os.set_blocking(up_r, False)
        self._frames = _Frames()
        self._unsent = bytearray(_frame(("config", self._config)))
        assert self._loop is not None
        self._loop.add_reader(up_r, self._on_readable)
        self._write()

    def _disconnect(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            if self._to_child >= 0:
                loop.remove_writer(self._to_child)
            if self._from_child >= 0:
                loop.remove_reader(self._from_child)
        for fd in (self._to_child, self._from_child):
            if fd >= 0:
                os.close(fd)
        self._to_child = self._from_child = -1
        self._writer_armed = False

    def _lost(self, why: str) -> None:
        """The child is gone: everyone still waiting hears AuditError; start another."""
        child, self._child = self._child, None
        self._started.clear()
        self._disconnect()
        self._outbox = []
        self._unsent = bytearray()
        waiting, self._waiting = self._waiting, {}
        settle((future, None) for future in waiting.values())
        probes, self._probes = self._probes, {}
        for probe in probes.values():
            if not probe.done():
                probe.set_result(False)
        if self._closing:
            return
        code = None
        if child is not None:
            # Its end of our pipe is closed: it has exited or is exiting (killed if not),
            # so reaping it here does not hold the event loop.
            if child.poll() is None:
                child.kill()
            code = child.wait()
        log.error("audit.writer_process_lost", why=why, exit_code=code, unsettled=len(waiting))
        self._schedule_restart()

    def _schedule_restart(self) -> None:
        if self._closing or self._loop is None or self._loop.is_closed():
            return
        self._restart = self._loop.call_later(self._restart_s, self._spawn)
        self._restart_s = min(self._restart_s * 2, _RESTART_S[1])

    # -- records ----------------------------------------------------------------------------
    async def ensure_writable(self) -> None:
        """As `AuditWriter.ensure_writable`: the child probes the store while it is failing."""
        if not self.alive:
            raise AuditError()
        if not self._failing:
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await self._on_own_loop(self.ensure_writable())
            return
        ticket = next(self._tickets)
        probe: asyncio.Future[bool] = loop.create_future()
        self._probes[ticket] = probe
        self._send(("probe", ticket))
        try:
            ok = await asyncio.wait_for(probe, self._timeout_s * 2 + 1)
        except TimeoutError as exc:
            raise AuditError() from exc
        finally:
            self._probes.pop(ticket, None)
        if not ok:
            raise AuditError()

    async def append(self, event: AuditEvent) -> int:
        """Durably record ``event``; returns its seq. Raises AuditError if it was not stored."""
        if not self.alive:
            raise AuditError()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            seq: int = await self._on_own_loop(self.append(event))
            return seq
        fields = stored_form(event)
        ticket = next(self._tickets)
        future: asyncio.Future[int] = loop.create_future()
        self._waiting[ticket] = future
        # Every record of this loop step leaves in one frame, at the start of the next.
        self._outbox.append((ticket, fields))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        expiry = loop.call_later(self._timeout_s * 2 + 1, expire, future)
        try:
            return await future
        finally:
            expiry.cancel()
            self._waiting.pop(ticket, None)

    async def _on_own_loop(self, work: Any) -> Any:
        if self._loop is None or self._loop.is_closed():
            work.close()
            raise AuditError()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._outbox:
            batch, self._outbox = self._outbox, []
            self._send(("append", batch))

    def _send(self, message: object) -> None:
        if self._to_child < 0:
            return  # no child: the waiters' futures fail with it (`_lost`) or by expiry
        self._unsent += _frame(message)
        self._write()

    def _write(self) -> None:
        """Write what the pipe takes now; the rest when it has room (the loop's writer)."""
        assert self._loop is not None
        try:
            while self._unsent:
                del self._unsent[: os.write(self._to_child, self._unsent)]
        except BlockingIOError:
            if not self._writer_armed:
                self._writer_armed = True
                self._loop.add_writer(self._to_child, self._write)
            return
        except OSError:
            self._lost("its input is closed")
            return
        if self._writer_armed:
            self._writer_armed = False
            self._loop.remove_writer(self._to_child)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._from_child, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost("exited")
            return
        try:
            messages = self._frames.feed(data)
        except Exception:  # noqa: BLE001 - a corrupt stream: restart rather than guess
            log.exception("audit.writer_process_stream_corrupt")
            if self._child is not None:
                self._child.kill()
            self._lost("corrupt stream")
            return
        for message in messages:
            self._handle(message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "settled":
            _, outcomes, self._failing, self._last_commit_ms = message
            waiting = self._waiting
            settle((waiting[t], seq) for t, seq in outcomes if t in waiting)
        elif kind == "status":
            _, self._failing, self._last_commit_ms = message
        elif kind == "probe":
            _, ticket, ok = message
            if ok:
                self._failing = False  # the store took the probe's write
            probe = self._probes.get(ticket)
            if probe is not None and not probe.done():
                probe.set_result(ok)
        elif kind == "ready":
            self._started.set()
            self._restart_s = _RESTART_S[0]
            log.info("audit.writer_process_ready", pid=self.pid)


# -- the child ------------------------------------------------------------------------------
def _child_main(read_fd: int, write_fd: int) -> int:
    # The server decides when writing ends (by closing our input): a Ctrl-C or SIGTERM to
    # the process group must not stop us before it has handed over its last records.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    frames = _Frames()
    send_lock = threading.Lock()

    def send(message: object) -> None:
        data = _frame(message)
        with send_lock:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(write_fd, view) :]
            except OSError:
                pass  # the server is gone: nobody waits for this news any more

    messages: list[Any] = []
    while not messages:
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            return 0
        messages = frames.feed(chunk)
    kind, config = messages.pop(0)
    if kind != "config" or not isinstance(config, WriterConfig):
        return 2

    from secure_aiaas.logging import configure_logging

    configure_logging(config.log_level, json_logs=config.json_logs)
    store = SqlAuditStore(config.audit_url, timeout_s=config.timeout_s)
    keys = ServerKeys(
        apikey_hmac_key=b"",  # the writer signs checkpoints, nothing else
        audit_signing_key=Ed25519PrivateKey.from_private_bytes(config.audit_signing_key),
        data_key=b"",
    )
    writer: AuditWriter

    def settled(outcomes: list[tuple[int, int | None]]) -> None:
        send(("settled", outcomes, writer.failing, writer.last_commit_ms))

    writer = AuditWriter(
        store,
        keys,
        checkpoint_every_records=config.checkpoint_every_records,
        checkpoint_every_s=config.checkpoint_every_s,
        max_batch=config.max_batch,
        timeout_s=config.timeout_s,
        on_settled=settled,
    )
    writer.start()
    stopped = threading.Event()

    def report_status() -> None:
        # `failing` also changes without a record (the writer's own probes while idle).
        last = writer.failing
        while not stopped.wait(0.1):
            if writer.failing != last:
                last = writer.failing
                send(("status", last, writer.last_commit_ms))

    threading.Thread(target=report_status, name="audit-status", daemon=True).start()
    send(("ready",))
    try:
        while True:
            for message in messages:
                if message[0] == "append":
                    for ticket, fields in message[1]:
                        writer.submit(fields, ticket)
                elif message[0] == "probe":
                    writer.probe().add_done_callback(_report_probe(send, message[1]))
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                return 0
            messages = frames.feed(chunk)
    finally:
        stopped.set()
        writer.close()  # commits what was queued, signs a last checkpoint
        store.dispose()


def _report_probe(send: Callable[[object], None], ticket: int) -> Callable[[Future[bool]], None]:
    def report(done: Future[bool]) -> None:
        send(("probe", ticket, bool(done.result())))

    return report


if __name__ == "__main__":
    # Under its module name, not __main__'s: the config's class must be the one pickled.
    from secure_aiaas.audit.writer_process import _child_main as child_main

    sys.exit(child_main(int(sys.argv[1]), int(sys.argv[2])))
