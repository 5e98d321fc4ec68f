"""Retention per tenant: signed purges that keep the chains verifiable, and legal holds.

A purge cannot delete rows from the middle of the global chain without breaking it, so it
turns a tenant's records older than its retention period into *tombstones*: content emptied,
``seq``, ``ts``, ``tenant``, both links and the hash kept. In the same transaction it appends
a purge record to the tenant's chain whose ``details["purge"]`` names the tenant, the cutoff,
the seq range, the count and the hash of the last purged record, signed with the audit key.
Verification accepts a tombstone only inside a validly signed purge of its tenant.

Purge records themselves are never purged: they are what makes the tombstones legitimate.
A legal hold on a tenant refuses every purge of it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from secure_aiaas.audit.chain import purge_payload
from secure_aiaas.audit.schema import CONTENT_COLUMNS, events_table, retention_table
from secure_aiaas.audit.store import SqlAuditStore, event_fields
from secure_aiaas.errors import AuditError
from secure_aiaas.types import AuditEvent

PURGE_ACTION = "audit.purge"


@dataclass(frozen=True)
class Retention:
    tenant: str
    retention_days: int | None
    legal_hold: bool
    updated_at: str


@dataclass(frozen=True)
class PurgeResult:
    tenant: str
    cutoff: str | None
    count: int
    first_seq: int | None = None
    last_seq: int | None = None
    record_seq: int | None = None  # the purge record's own seq
    skipped: str | None = None  # why nothing was purged (legal hold, no retention)


def _upsert(conn: Connection, tenant: str, now: str, **values: Any) -> None:
    exists = conn.execute(
        select(retention_table.c.tenant).where(retention_table.c.tenant == tenant)
    ).first()
    if exists:
        conn.execute(
            update(retention_table)
            .where(retention_table.c.tenant == tenant)
            .values(updated_at=now, **values)
        )
    else:
        conn.execute(
            insert(retention_table).values(
                tenant=tenant,
                updated_at=now,
                **{"retention_days": None, "legal_hold": False, **values},
            )
        )


def set_retention(store: SqlAuditStore, tenant: str, days: int | None, now: str) -> None:
    """Keep ``tenant``'s records ``days`` days (None: for ever)."""
    if days is not None and days < 1:
        raise ValueError("retention must be at least one day")
    try:
        with store._writer.begin() as conn:
            _upsert(conn, tenant, now, retention_days=days)
    except SQLAlchemyError as exc:
        raise AuditError() from exc


def set_legal_hold(store: SqlAuditStore, tenant: str, on: bool, now: str) -> None:
    try:
        with store._writer.begin() as conn:
            _upsert(conn, tenant, now, legal_hold=on)
    except SQLAlchemyError as exc:
        raise AuditError() from exc


def list_retention(store: SqlAuditStore) -> list[Retention]:
    with store._reader.connect() as conn:
        rows = conn.execute(select(retention_table).order_by(retention_table.c.tenant)).all()
    return [Retention(r.tenant, r.retention_days, bool(r.legal_hold), r.updated_at) for r in rows]


def cutoff_for(now: str, days: int) -> str:
    """The ts before which records are past retention (same ISO format as ``utc_now``)."""
    return (datetime.fromisoformat(now) - timedelta(days=days)).isoformat(timespec="microseconds")


def purge(
    store: SqlAuditStore,
    *,
    now: str,
    signing_key: Ed25519PrivateKey,
    key_id: str,
    tenant: str | None = None,
    dry_run: bool = False,
    cutoff: str | None = None,
) -> list[PurgeResult]:
    """Purge every tenant with a retention period (or only ``tenant``).

    Args:
        cutoff: purge records older than this instead of the tenant's retention period
            (tests and one-off purges; a legal hold still wins).
    """
    rules = {r.tenant: r for r in list_retention(store)}
    tenants = [tenant] if tenant is not None else sorted(rules)
    results = []
    for name in tenants:
        rule = rules.get(name)
        if rule is not None and rule.legal_hold:
            results.append(PurgeResult(name, None, 0, skipped="legal hold"))
            continue
        limit = cutoff
        if limit is None:
            if rule is None or rule.retention_days is None:
                results.append(PurgeResult(name, None, 0, skipped="no retention period"))
                continue
            limit = cutoff_for(now, rule.retention_days)
        results.append(_purge_tenant(store, name, limit, now, signing_key, key_id, dry_run))
    return results


def _purge_tenant(
    store: SqlAuditStore,
    tenant: str,
    cutoff: str,
    now: str,
    signing_key: Ed25519PrivateKey,
    key_id: str,
    dry_run: bool,
) -> PurgeResult:
    old = and_(
        events_table.c.tenant == tenant,
        events_table.c.ts < cutoff,
        events_table.c.details.is_not(None),
        events_table.c.action.is_distinct_from(PURGE_ACTION),
    )
    try:
        with store._writer.begin() as conn:
            store._lock_head(conn)  # serialised with appends and other purges
            hold = conn.execute(
                select(retention_table.c.legal_hold).where(retention_table.c.tenant == tenant)
            ).scalar()
            if hold:  # re-checked under the lock: a hold set meanwhile wins
                return PurgeResult(tenant, cutoff, 0, skipped="legal hold")
            first, last, count = conn.execute(
                select(
                    func.min(events_table.c.seq), func.max(events_table.c.seq), func.count()
                ).where(old)
            ).one()
            if not count or dry_run:
                return PurgeResult(tenant, cutoff, int(count or 0), first, last)
            last_hash = conn.execute(
                select(events_table.c.hash).where(events_table.c.seq == last)
            ).scalar_one()
            with store.purge_mode(conn):
                conn.execute(
                    update(events_table)
                    .where(old)
                    .values(**{name: None for name in CONTENT_COLUMNS})
                )
            details = {
                "tenant": tenant,
                "cutoff": cutoff,
                "first_seq": int(first),
                "last_seq": int(last),
                "count": int(count),
                "last_purged_hash": last_hash,
                "ts": now,
                "key_id": key_id,
            }
            details["signature"] = signing_key.sign(purge_payload(details)).hex()
            event = AuditEvent(
                ts=now,
                request_id=uuid.uuid4().hex,
                method="CLI",
                route="cli:audit.purge",
                status=0,
                decision="allow",
                latency_ms=0.0,
                tenant=tenant,
                action=PURGE_ACTION,
                object=f"audit:tenant:{tenant}",
                details={"purge": details},
            )
            (seq,) = store.append_locked(conn, [event_fields(event)])
    except SQLAlchemyError as exc:
        raise AuditError() from exc
    return PurgeResult(tenant, cutoff, int(count), int(first), int(last), seq)
