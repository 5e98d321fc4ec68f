"""The audit writer in a process of its own (`AuditWriterProcess`), on real SQLite and
PostgreSQL: durable before it answers, the same stored records as the in-thread writer,
fail closed when the child dies or the store fails, and nothing acknowledged ever lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from secure_aiaas.audit import AuditWriter, AuditWriterProcess, SqlAuditStore, verify_store
from secure_aiaas.audit.store import event_fields
from secure_aiaas.crypto import ServerKeys, load_keys
from secure_aiaas.errors import AuditError
from tests.security.test_audit_hardening import HOSTILE, event, known_audit_public_keys_from
from tests.support.outage import Outage


@asynccontextmanager
async def running(
    store: SqlAuditStore, keys: ServerKeys, **options: Any
) -> AsyncIterator[AuditWriterProcess]:
    writer = AuditWriterProcess(store, keys, **options)
    writer.start()
    try:
        assert await writer.wait_started(30)
        yield writer
    finally:
        writer.close()


async def until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(work())


def test_concurrent_appends_are_durable_and_stored_as_the_thread_writer_stores_them(
    store: SqlAuditStore, keys: ServerKeys
) -> None:
    events = [event(i) for i in range(300)]
    events.insert(150, event(999, **HOSTILE))

    async def work() -> list[int]:
        async with running(store, keys, max_batch=64) as writer:
            return list(await asyncio.gather(*(writer.append(e) for e in events)))

    seqs = run(work)
    assert sorted(seqs) == list(range(1, len(events) + 1))
    stored = {r["seq"]: r for r in store.iter_records()}
    for seq, sent in zip(seqs, events, strict=True):
        expected = event_fields(sent)
        assert {k: stored[seq][k] for k in expected} == expected
    report = verify_store(store, known_audit_public_keys_from(keys))
    assert report.ok, report.damage
    assert report.checkpoints >= 1  # the last checkpoint, signed as the child closed


def test_the_thread_writer_and_the_process_writer_chain_into_one_store(
    tmp_path: Path, keys: ServerKeys
) -> None:
    """Switching `audit.writer` between restarts keeps one verifiable chain."""
    store = SqlAuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.create_schema()
    thread = AuditWriter(store, keys)
    thread.start()

    async def in_thread() -> list[int]:
        return list(await asyncio.gather(*(thread.append(event(i)) for i in range(20))))

    try:
        assert sorted(run(in_thread)) == list(range(1, 21))
    finally:
        thread.close()

    async def work() -> list[int]:
        async with running(store, keys) as writer:
            return list(await asyncio.gather(*(writer.append(event(i)) for i in range(20))))

    assert sorted(run(work)) == list(range(21, 41))
    assert verify_store(store, known_audit_public_keys_from(keys)).ok
    store.dispose()


def test_a_killed_child_fails_its_waiters_closed_and_a_new_one_takes_over(
    store: SqlAuditStore, keys: ServerKeys
) -> None:
    async def work() -> tuple[list[object], list[int], int]:
        async with running(store, keys) as writer:
            first_pid = writer.pid
            assert first_pid is not None
            before = list(await asyncio.gather(*(writer.append(event(i)) for i in range(50))))
            # Records in flight when the child dies: each either stored or refused, none
            # left waiting and none acknowledged without being stored.
            pending = [asyncio.ensure_future(writer.append(event(100 + i))) for i in range(50)]
            await asyncio.sleep(0)
            os.kill(first_pid, signal.SIGKILL)
            outcomes = await asyncio.wait_for(
                asyncio.gather(*pending, return_exceptions=True), timeout=10
            )
            assert writer.failing  # until the new child is ready: readiness false, 503s
            with pytest.raises(AuditError):
                await writer.ensure_writable()
            await until(lambda: writer.alive)
            assert writer.pid != first_pid
            after = await writer.append(event(500))
            return [*before, *outcomes], before, after

    outcomes, before, after = run(work)
    stored = {r["seq"] for r in store.iter_records()}
    acknowledged = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, AuditError)]
    assert len(acknowledged) + len(refused) == len(outcomes)
    assert set(acknowledged) <= stored and set(before) <= stored
    assert after == max(stored)
    report = verify_store(store, known_audit_public_keys_from(keys))
    assert report.ok, report.damage


def test_a_store_outage_is_reported_failing_and_recovered_through_the_child(
    tmp_path: Path, keys: ServerKeys
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = SqlAuditStore(url, timeout_s=0.3)
    store.create_schema()

    async def work() -> int:
        async with running(store, keys, timeout_s=0.3) as writer:
            await writer.append(event(1))
            with Outage(url):
                with pytest.raises(AuditError):
                    await writer.append(event(2))
                await until(lambda: writer.failing, 5)
                with pytest.raises(AuditError):
                    await writer.ensure_writable()  # the child's probe fails too
            await writer.ensure_writable()  # its probe finds the store writable again
            assert not writer.failing
            return await writer.append(event(3))

    assert run(work) > 1
    assert verify_store(store, known_audit_public_keys_from(keys)).ok
    store.dispose()


def test_an_append_from_another_event_loop_is_handed_to_the_writers_loop(
    store: SqlAuditStore, keys: ServerKeys
) -> None:
    async def work() -> int:
        async with running(store, keys) as writer:
            # A thread with a loop of its own (as a worker thread calling back in would).
            return await asyncio.to_thread(asyncio.run, writer.append(event(7)))

    seq = run(work)
    assert [r["request_id"] for r in store.iter_records() if r["seq"] == seq] == ["r000007"]


def test_the_child_outlives_neither_its_server_nor_a_signal_to_the_group(
    tmp_path: Path, keys_dir: Path
) -> None:
    """SIGINT/SIGTERM to the process group leave the child writing until the server closes
    its input; a server gone (kill -9) closes it too: the child commits and exits."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    SqlAuditStore(url).create_schema()
    script = tmp_path / "server.py"
    script.write_text(
        "import asyncio, pathlib\n"
        "from secure_aiaas.audit import AuditWriterProcess, SqlAuditStore, utc_now\n"
        "from secure_aiaas.crypto import load_keys\n"
        "from secure_aiaas.types import AuditEvent\n"
        "async def main():\n"
        f"    keys = load_keys(pathlib.Path({str(keys_dir)!r}))\n"
        f"    w = AuditWriterProcess(SqlAuditStore({url!r}), keys)\n"
        "    w.start()\n"
        "    assert await w.wait_started(30)\n"
        "    for i in range(10):\n"
        "        await w.append(AuditEvent(utc_now(), f'r{i}', 'GET', '/x', 200, 'allow', 1.0))\n"
        "    print('PID', w.pid, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    keys = load_keys(keys_dir)
    server = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        line = b""
        while not line.startswith(b"PID "):  # (structlog's default prints there too)
            line = server.stdout.readline()
            assert line, "the server script ended early"
        child = psutil.Process(int(line.split()[1]))
        os.killpg(server.pid, signal.SIGTERM)  # the server dies of it; the child must not
        server.wait(10)
        # Its input is closed now: it drains, signs the last checkpoint and exits.
        child.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
    store = SqlAuditStore(url)
    assert store.count() == 10
    report = verify_store(store, known_audit_public_keys_from(keys))
    assert report.ok and report.checkpoints >= 1
    store.dispose()


def test_the_signing_key_handed_to_the_child_never_shows_in_a_repr(
    store: SqlAuditStore, keys: ServerKeys
) -> None:
    writer = AuditWriterProcess(store, keys)
    config = writer._config
    raw = config.audit_signing_key
    assert len(raw) == 32
    assert raw.hex() not in repr(config) and repr(raw) not in repr(config)
