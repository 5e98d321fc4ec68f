"""Filtered, cursor-paginated reads of the audit trail (the auditor API's engine).

The tenant scope is decided by the caller (the route, from the policy), never by the
cursor: a cursor only says where the previous page stopped.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from secure_aiaas.audit.chain import HASHED_FIELDS
from secure_aiaas.audit.schema import events_table
from secure_aiaas.audit.store import SqlAuditStore
from secure_aiaas.errors import InputError

MAX_LIMIT = 1000
# What a reader sees of a record: its position, every hashed field, its hash.
_PUBLIC = ("seq", *HASHED_FIELDS, "hash")


@dataclass(frozen=True)
class EventFilter:
    tenant: str | None = None  # None: every tenant (security-admin only; the route decides)
    subject: str | None = None
    action: str | None = None
    decision: str | None = None
    model: str | None = None
    status: int | None = None
    since: str | None = None
    until: str | None = None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "seq":
            raise ValueError(kind)
        return max(0, int(value))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError("invalid cursor") from exc


def query_events(
    store: SqlAuditStore, flt: EventFilter, *, cursor: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of matching records in seq order, and the cursor of the next page."""
    limit = max(1, min(limit, MAX_LIMIT))
    c = events_table.c
    stmt = select(*(c[name] for name in _PUBLIC)).where(c.seq > decode_cursor(cursor))
    for name in ("tenant", "subject", "action", "decision", "model", "status"):
        value = getattr(flt, name)
        if value is not None:
            stmt = stmt.where(c[name] == value)
    if flt.since:
        stmt = stmt.where(c.ts >= flt.since)
    if flt.until:
        stmt = stmt.where(c.ts < flt.until)
    with store._reader.connect() as conn:
        rows = conn.execute(stmt.order_by(c.seq).limit(limit + 1)).all()
    page = [dict(zip(_PUBLIC, row, strict=True)) for row in rows[:limit]]
    for record in page:
        record["purged"] = record["details"] is None
        record["details"] = json.loads(record["details"]) if record["details"] else None
    next_cursor = encode_cursor(page[-1]["seq"]) if len(rows) > limit else None
    return page, next_cursor
