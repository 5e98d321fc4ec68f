"""The audit store under hostile records and faults (real SQLite and PostgreSQL): append-only
in the database, bounded fields, a writer that outlives poison, orphans named as orphans."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from secure_aiaas.audit import AuditWriter, SqlAuditStore, utc_now, verify_store
from secure_aiaas.crypto import ServerKeys
from secure_aiaas.crypto.keystore import known_audit_public_keys
from secure_aiaas.errors import AuditError
from secure_aiaas.types import AuditEvent
from tests.support.outage import Outage


def event(i: int, **changes: Any) -> AuditEvent:
    fields: dict[str, Any] = dict(
        ts=utc_now(),
        request_id=f"r{i:06d}",
        method="GET",
        route="/v1/whoami",
        status=200,
        decision="allow",
        latency_ms=1.0,
        tenant="acme",
        subject="alice",
        key_id="k_1",
        role="user",
        action="read",
        object="identity",
        rule="*, *, identity, read, allow",
        policy_version="v1",
        details={"n": i},
    )
    fields.update(changes)
    return AuditEvent(**fields)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET status=201 WHERE seq=1",
        "DELETE FROM audit_events WHERE seq=1",
        "UPDATE audit_checkpoints SET head_hash='x'",
        "DELETE FROM audit_checkpoints",
    ],
)
def test_records_and_checkpoints_refuse_update_and_delete(
    store: SqlAuditStore, keys: ServerKeys, statement: str
) -> None:
    store.append_batch([event(i) for i in range(3)])
    store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, utc_now())
    before = list(store.iter_records())
    with pytest.raises(SQLAlchemyError, match="append-only"):
        with store._writer.begin() as conn:  # the service's own write connection
            conn.execute(text(statement))
    assert list(store.iter_records()) == before
    assert len(store.checkpoints()) == 1


def test_truncate_is_refused_on_postgres(pg_url: str) -> None:
    store = SqlAuditStore(pg_url)
    store.create_schema()
    store.append_batch([event(1)])
    with pytest.raises(SQLAlchemyError, match="append-only"):
        with store._writer.begin() as conn:
            conn.execute(text("TRUNCATE audit_events"))
    assert store.count() == 1
    store.dispose()


HOSTILE = {
    "route": "/v2/models/" + "x" * 600,
    "subject": "nul\x00byte\x00subject",
    "object": "model:jane\ud800doe",  # a lone surrogate: no database stores it as text
    "request_id": "r" * 500,
    "details": {"model": "m" * 1000, "blob": "y" * 20_000, 3: object()},
}


def test_hostile_values_are_bounded_and_never_fail_a_neighbour(
    store: SqlAuditStore, keys: ServerKeys
) -> None:
    """On PostgreSQL a too-long or NUL-bearing value would abort the whole group commit."""
    writer = AuditWriter(store, keys, max_batch=64)
    writer.start()

    async def burst() -> list[int]:
        events = [event(i) for i in range(16)]
        events.insert(7, event(99, **HOSTILE))
        return await asyncio.gather(*(writer.append(e) for e in events))

    try:
        seqs = asyncio.run(burst())
    finally:
        writer.close()
    assert len(set(seqs)) == 17
    rows = {r["request_id"][:7]: r for r in store.iter_records()}
    hostile = next(r for r in store.iter_records() if r["request_id"].startswith("rrrr"))
    assert len(hostile["route"]) <= 512 and len(hostile["request_id"]) <= 64
    assert "\x00" not in hostile["subject"] and "\ud800" not in hostile["object"]
    assert len(hostile["details"]) <= 8192
    assert "truncated" in hostile["details"] or "unencodable" in hostile["details"]
    assert hostile["model"] is None or len(hostile["model"]) <= 256
    assert len(rows) >= 16
    report = verify_store(store, known_audit_public_keys_from(keys))
    assert report.ok, report.damage


def known_audit_public_keys_from(keys: ServerKeys) -> dict[str, Any]:
    return {keys.audit_key_id: keys.audit_public_key}


class PoisonStore(SqlAuditStore):
    """A real store whose append raises a non-database error for one marked record."""

    def append_rows(self, rows: list[dict[str, Any]]) -> list[int]:
        if any(r.get("request_id") == "poison" for r in rows):
            raise RuntimeError("a bug in a layer below")
        return super().append_rows(rows)


def test_a_poisoned_event_fails_alone_and_the_writer_goes_on(
    store_url: str, keys: ServerKeys
) -> None:
    store = PoisonStore(store_url)
    store.create_schema()
    writer = AuditWriter(store, keys, max_batch=64, timeout_s=1.0)
    writer.start()

    async def run() -> tuple[list[object], int]:
        first = await asyncio.gather(
            *(writer.append(event(i)) for i in range(4)),
            writer.append(event(9, request_id="poison")),
            return_exceptions=True,
        )
        after = await writer.append(event(10))
        return first, after

    try:
        first, after = asyncio.run(run())
        assert writer.alive and not writer.failing
    finally:
        writer.close()
        store.dispose()
    assert any(isinstance(r, AuditError) for r in first)  # its batch failed: 503 for those
    assert after > 0  # the very next request is recorded


def test_writer_reports_failing_while_locked_and_recovers_by_probe(
    tmp_path: Path, keys: ServerKeys
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = SqlAuditStore(url, timeout_s=0.3)
    store.create_schema()
    writer = AuditWriter(store, keys, timeout_s=0.3)
    writer.start()
    try:
        asyncio.run(writer.append(event(1)))
        with Outage(url):
            with pytest.raises(AuditError):
                asyncio.run(writer.append(event(2)))
            assert writer.failing
            with pytest.raises(AuditError):
                asyncio.run(writer.ensure_writable())  # the probe fails too
        asyncio.run(writer.ensure_writable())  # a probe finds the store writable again
        assert not writer.failing
        assert asyncio.run(writer.append(event(3))) > 0
    finally:
        writer.close()
        store.dispose()


def test_a_dead_writer_refuses_at_once(store: SqlAuditStore, keys: ServerKeys) -> None:
    writer = AuditWriter(store, keys)
    with pytest.raises(AuditError):
        asyncio.run(writer.append(event(1)))
    assert writer.failing


def test_verify_names_orphaned_attempts_not_damage(
    store: SqlAuditStore, keys: ServerKeys, keys_dir: Path
) -> None:
    store.append_batch(
        [
            event(1, request_id="done", decision="attempt", status=0),
            event(2, request_id="done"),
            event(3, request_id="crashed", decision="attempt", status=0),
            event(4, request_id="other"),
        ]
    )
    store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, utc_now())
    report = verify_store(store, known_audit_public_keys(keys_dir))
    assert report.ok
    assert report.orphaned_attempts == [3]


def test_concurrent_appends_from_threads_with_hostile_rows_keep_one_chain(
    store: SqlAuditStore, keys: ServerKeys
) -> None:
    def work(offset: int) -> None:
        for i in range(10):
            extra = HOSTILE if i % 5 == 0 else {}
            store.append_batch([event(offset + i, **extra)])

    threads = [threading.Thread(target=work, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 40
    assert verify_store(store, known_audit_public_keys_from(keys)).ok
