"""The audit store on real SQLite and real PostgreSQL: chain, checkpoints, tampering, forks."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from secure_aiaas.audit import SqlAuditStore, verify_chain
from secure_aiaas.audit.chain import record_hash
from secure_aiaas.crypto import ServerKeys
from secure_aiaas.crypto.keystore import known_audit_public_keys
from secure_aiaas.errors import AuditError
from secure_aiaas.types import AuditEvent
from tests.support.tamper import tamper


def make_event(i: int, tenant: str = "acme") -> AuditEvent:
    return AuditEvent(
        ts=f"2026-01-01T00:00:{i % 60:02d}Z",
        request_id=f"r{i}",
        method="GET",
        route="/v1/whoami",
        status=200,
        decision="allow",
        latency_ms=1.5 + i,
        tenant=tenant,
        subject="alice",
        key_id="k_1",
        role="user",
        action="read",
        object="identity",
        rule="*, *, identity, read, allow",
        policy_version="abc",
        details={"n": i},
    )


def verify(store: SqlAuditStore, keys_dir: Path) -> Any:
    return verify_chain(
        store.iter_records(), store.checkpoints(), known_audit_public_keys(keys_dir)
    )


def fill(store: SqlAuditStore, keys: ServerKeys, n: int = 20) -> None:
    for start in range(0, n, 5):
        store.append_batch([make_event(i) for i in range(start, min(n, start + 5))])
    store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, "2026-01-01T00:01:00Z")


def exec_sql(store: SqlAuditStore, statement: str, **params: Any) -> None:
    tamper(store, statement, **params)  # below the store's API, on purpose


def _insert_sql(fields: dict[str, Any]) -> str:
    columns = ", ".join(fields)
    values = ", ".join(":" + c for c in fields)
    return f"INSERT INTO audit_events ({columns}) VALUES ({values})"


def insert_raw(store: SqlAuditStore, fields: dict[str, Any]) -> None:
    """One record written straight into the table by an attacker (protections removed)."""
    exec_sql(store, _insert_sql(fields), **fields)


def insert_plain(store: SqlAuditStore, fields: dict[str, Any]) -> None:
    """One record written past the store's chaining, the database's protections on (a
    writer that lost track of the heads)."""
    with store._writer.begin() as conn:
        conn.execute(text(_insert_sql(fields)), fields)


def row(store: SqlAuditStore, seq: int) -> dict[str, Any]:
    return next(r for r in store.iter_records() if r["seq"] == seq)


def test_chain_links_and_verifies(store: SqlAuditStore, keys: ServerKeys, keys_dir: Path) -> None:
    fill(store, keys)
    records = list(store.iter_records())
    assert [r["seq"] for r in records] == list(range(1, 21))
    for prev, cur in zip(records, records[1:], strict=False):
        assert cur["prev_hash"] == prev["hash"]
        assert record_hash(cur, cur["prev_hash"]) == cur["hash"]
    report = verify(store, keys_dir)
    assert report.ok and report.records == 20 and report.checkpoints == 1


def test_detects_edited_record(store: SqlAuditStore, keys: ServerKeys, keys_dir: Path) -> None:
    fill(store, keys)
    exec_sql(store, "UPDATE audit_events SET decision='deny' WHERE seq=7")
    report = verify(store, keys_dir)
    assert (report.damage.kind, report.damage.seq) == ("edited", 7)


def test_detects_edited_and_rehashed_record(
    store: SqlAuditStore, keys: ServerKeys, keys_dir: Path
) -> None:
    fill(store, keys)
    r = row(store, 7)
    r["status"] = 500
    exec_sql(
        store,
        "UPDATE audit_events SET status=500, hash=:h WHERE seq=7",
        h=record_hash(r, r["prev_hash"]),
    )
    report = verify(store, keys_dir)
    assert (report.damage.kind, report.damage.seq) == ("edited", 7)


def test_detects_deleted_record(store: SqlAuditStore, keys: ServerKeys, keys_dir: Path) -> None:
    fill(store, keys)
    exec_sql(store, "DELETE FROM audit_events WHERE seq=9")
    report = verify(store, keys_dir)
    assert (report.damage.kind, report.damage.seq) == ("deleted", 9)


def test_detects_inserted_record(store: SqlAuditStore, keys: ServerKeys, keys_dir: Path) -> None:
    fill(store, keys)
    # Make room at seq 11 and forge a self-consistent record there.
    for seq in range(20, 10, -1):
        exec_sql(store, "UPDATE audit_events SET seq=:new WHERE seq=:old", new=seq + 1, old=seq)
    forged = {**row(store, 10), "request_id": "forged", "seq": 11}
    forged["prev_hash"] = "f" * 64
    forged["tenant_prev_hash"] = "e" * 64
    forged["hash"] = record_hash(forged, forged["prev_hash"])
    insert_raw(store, forged)
    report = verify(store, keys_dir)
    assert (report.damage.kind, report.damage.seq) == ("inserted", 11)


def test_detects_reordered_records(store: SqlAuditStore, keys: ServerKeys, keys_dir: Path) -> None:
    fill(store, keys)
    a, b = row(store, 5), row(store, 6)
    swap_cols = [c for c in a if c != "seq"]
    for target in (5, 6):
        # Move the unique hashes out of the way first, then write the swapped content.
        exec_sql(
            store,
            "UPDATE audit_events SET hash=:t, prev_hash=:t2, tenant_prev_hash=:t3 WHERE seq=:s",
            t=f"tmp{target}",
            t2=f"tmpp{target}",
            t3=f"tmpt{target}",
            s=target,
        )
    for target, source in ((5, b), (6, a)):
        sets = ", ".join(f"{c}=:{c}" for c in swap_cols)
        exec_sql(
            store,
            f"UPDATE audit_events SET {sets} WHERE seq=:seq",
            **{c: source[c] for c in swap_cols},
            seq=target,
        )
    report = verify(store, keys_dir)
    assert (report.damage.kind, report.damage.seq) == ("reordered", 5)


def test_detects_dropped_tail_against_checkpoint(
    store: SqlAuditStore, keys: ServerKeys, keys_dir: Path
) -> None:
    fill(store, keys)
    exec_sql(store, "DELETE FROM audit_events WHERE seq > 17")
    exec_sql(store, "UPDATE audit_head SET seq=17")
    report = verify(store, keys_dir)
    assert report.damage.kind == "truncated" and report.damage.seq == 18


def test_detects_forged_checkpoint(store: SqlAuditStore, keys: ServerKeys, keys_dir: Path) -> None:
    fill(store, keys)
    exec_sql(store, "UPDATE audit_checkpoints SET head_hash=:h", h="0" * 64)
    assert verify(store, keys_dir).damage.kind == "bad-checkpoint"


def test_rewritten_chain_fails_against_signed_checkpoint(
    store: SqlAuditStore, keys: ServerKeys, keys_dir: Path
) -> None:
    fill(store, keys)
    # Rewrite every record from 3 on with valid links (global and tenant, all one tenant
    # here): only the signature can catch it.
    records = list(store.iter_records())
    prev = records[1]["hash"]
    for r in records[2:]:
        r["subject"] = "someone-else"
        r["prev_hash"] = r["tenant_prev_hash"] = prev
        r["hash"] = record_hash(r, prev)
        prev = r["hash"]
    exec_sql(
        store,
        "UPDATE audit_events SET hash='x'||seq, prev_hash='y'||seq, "
        "tenant_prev_hash='z'||seq WHERE seq >= 3",
    )
    for r in records[2:]:
        exec_sql(
            store,
            "UPDATE audit_events SET subject=:s, prev_hash=:p, "
            "tenant_prev_hash=:p, hash=:h WHERE seq=:seq",
            s=r["subject"],
            p=r["prev_hash"],
            h=r["hash"],
            seq=r["seq"],
        )
    report = verify(store, keys_dir)
    assert report.damage.kind == "edited" and report.damage.seq == 20


def test_checkpoints_are_signed_and_only_for_new_heads(
    store: SqlAuditStore, keys: ServerKeys
) -> None:
    assert store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, "t") is None
    store.append_batch([make_event(1)])
    first = store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, "t")
    assert first is not None and first.verify(keys.audit_public_key)
    assert store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, "t") is None


def test_concurrent_threads_never_fork_the_chain(store: SqlAuditStore, keys_dir: Path) -> None:
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(25):
                store.append_batch([make_event(worker * 1000 + i)])
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = verify(store, keys_dir)
    assert report.ok and report.records == 200


def _process_writer(url: str, worker: int, count: int) -> None:
    store = SqlAuditStore(url, timeout_s=10)
    for i in range(count):
        store.append_batch([make_event(worker * 1000 + i)])
    store.dispose()


def test_concurrent_processes_never_fork_the_chain(
    store_url: str, store: SqlAuditStore, keys_dir: Path
) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(store_url, w, 20)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    report = verify(store, keys_dir)
    assert report.ok and report.records == 80
    hashes = [r["prev_hash"] for r in store.iter_records()]
    assert len(set(hashes)) == len(hashes)  # no two records share a predecessor: no fork


def test_records_hold_no_payloads(store: SqlAuditStore) -> None:
    store.append_batch([make_event(1)])
    stored = next(store.iter_records())
    assert set(json.loads(stored["details"])) == {"n"}


# -- SQLite appenders of several processes take turns (a lock file beside the database) ----


def _sqlite_store(tmp_path: Path, timeout_s: float) -> tuple[SqlAuditStore, Path]:
    database = tmp_path / "turns.db"
    store = SqlAuditStore(f"sqlite:///{database}", timeout_s=timeout_s)
    store.create_schema()
    return store, Path(f"{database}.append-lock")


def test_an_append_waits_for_the_turn_another_appender_holds(
    tmp_path: Path, keys_dir: Path
) -> None:
    store, lock_file = _sqlite_store(tmp_path, timeout_s=30)
    other = os.open(lock_file, os.O_RDWR)  # another process's appender, in its turn
    fcntl.flock(other, fcntl.LOCK_EX)
    appended = threading.Event()
    worker = threading.Thread(target=lambda: (store.append_batch([make_event(1)]), appended.set()))
    worker.start()
    try:
        assert not appended.wait(0.5)  # queued behind the turn, not appending beside it
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    assert appended.wait(10)
    worker.join()
    assert verify(store, keys_dir).ok
    store.dispose()


def test_an_append_goes_on_without_its_turn_once_the_timeout_passes(
    tmp_path: Path, keys_dir: Path
) -> None:
    store, lock_file = _sqlite_store(tmp_path, timeout_s=0.3)
    stuck = os.open(lock_file, os.O_RDWR)  # an appender that never gives its turn back
    fcntl.flock(stuck, fcntl.LOCK_EX)
    try:
        # SQLite's own lock is free: the append is made (and chained) without the turn.
        assert store.append_batch([make_event(1), make_event(2)]) == [1, 2]
    finally:
        os.close(stuck)
    assert verify(store, keys_dir).ok and verify(store, keys_dir).records == 2
    store.dispose()


def test_a_lock_file_that_cannot_be_made_changes_nothing_but_the_waiting(
    tmp_path: Path, keys_dir: Path
) -> None:
    (tmp_path / "turns.db.append-lock").mkdir()  # opening it as a file fails
    store, _ = _sqlite_store(tmp_path, timeout_s=5)
    assert store.append_batch([make_event(1)]) == [1]
    assert verify(store, keys_dir).ok
    store.dispose()


def test_the_database_refuses_a_second_record_after_the_same_one(
    store: SqlAuditStore, keys: ServerKeys
) -> None:
    """A fork is refused below the store's code, by the schema itself (unique links on
    PostgreSQL, the link trigger on SQLite)."""
    fill(store, keys, n=3)
    base = row(store, 3)
    for link in ("prev_hash", "tenant_prev_hash"):
        fork = {**base, "seq": 99, "request_id": "fork"}
        other = "prev_hash" if link == "tenant_prev_hash" else "tenant_prev_hash"
        fork[other] = "f" * 64  # only `link` repeats an existing record's
        fork["hash"] = record_hash(fork, fork["prev_hash"])
        with pytest.raises(IntegrityError):
            insert_plain(store, fork)
    assert store.count() == 3


def _next_record(store: SqlAuditStore, **changes: Any) -> dict[str, Any]:
    """The record that would follow the heads now (tenant acme), with ``changes``."""
    last = row(store, store.count())
    record = {**last, "seq": last["seq"] + 1, "request_id": "next", "prev_hash": last["hash"]}
    record["tenant_prev_hash"] = last["hash"]  # every record so far is acme's
    record.update(changes)
    record["hash"] = record_hash(record, record["prev_hash"])
    return record


def test_sqlite_refuses_a_record_that_does_not_follow_the_heads(
    tmp_path: Path, keys: ServerKeys
) -> None:
    """One writer at a time: each record must come next and link to both heads."""
    store, _ = _sqlite_store(tmp_path, timeout_s=5)
    fill(store, keys, n=4)
    third = row(store, 3)
    refused = {
        "a gap": {"seq": 6},
        "a seq taken": {"seq": 4, "prev_hash": third["hash"]},
        "a stale global head": {"prev_hash": third["hash"]},
        "a stale tenant head": {"tenant_prev_hash": third["hash"]},
        "a made-up link": {"prev_hash": "f" * 64},
        "another tenant's head": {"tenant": "globex"},  # globex's chain starts at genesis
        "a tenant link without a tenant": {"tenant": None},
    }
    for why, changes in refused.items():
        with pytest.raises(IntegrityError, match="follow the chain heads"):
            insert_plain(store, _next_record(store, **changes))
        assert store.count() == 4, why
    insert_plain(store, _next_record(store))  # the one that does follow them
    assert store.count() == 5
    # The store's head row is now behind the table: its next record would fork the chain.
    with pytest.raises(AuditError):
        store.append_batch([make_event(9, tenant="globex")])
    assert store.count() == 5
    store.dispose()


@pytest.mark.timeout(120)  # threads that deadlock on the connection fail here, not in 600 s
def test_threads_appending_to_one_sqlite_store_keep_one_chain(
    tmp_path: Path, keys: ServerKeys, keys_dir: Path
) -> None:
    """SQLite's appends share one kept connection: threads take turns on it."""
    store, _ = _sqlite_store(tmp_path, timeout_s=30)
    seqs: list[int] = []

    def append_some(worker: int) -> None:
        for i in range(40):
            tenant = ("acme", "globex")[(worker + i) % 2]
            seqs.extend(store.append_batch([make_event(i, tenant), make_event(i + 1, tenant)]))

    threads = [threading.Thread(target=append_some, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seqs) == list(range(1, 481))
    store.write_checkpoint(keys.audit_signing_key, keys.audit_key_id, "2026-01-01T00:01:00Z")
    report = verify(store, keys_dir)
    assert report.ok and report.records == 480
    store.dispose()
