"""The audit store on SQLAlchemy Core: one schema for embedded SQLite and PostgreSQL.

Appends are serialised by the database, not by this process, so several replicas can share
one store without forking the chain: SQLite takes its write lock at ``BEGIN IMMEDIATE``;
PostgreSQL locks the single ``audit_head`` row (``SELECT ... FOR UPDATE``). The ``UNIQUE``
constraint on ``prev_hash`` makes a fork impossible even if that serialisation were bypassed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from secure_aiaas.audit.chain import GENESIS_HASH, Checkpoint, record_hash, sign_checkpoint
from secure_aiaas.errors import AuditError
from secure_aiaas.storage import is_sqlite, make_engine
from secure_aiaas.types import AuditEvent

metadata = MetaData()

events_table = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("ts", String(40), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("tenant", String(128), index=True),
    Column("subject", String(256)),
    Column("key_id", String(64)),
    Column("role", String(64)),
    Column("method", String(16), nullable=False),
    Column("route", String(512), nullable=False),
    Column("action", String(64)),
    Column("object", String(256)),
    Column("decision", String(32), nullable=False),
    Column("rule", String(512)),
    Column("policy_version", String(64)),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("hash", String(64), nullable=False, unique=True),
)

head_table = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

checkpoints_table = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("head_hash", String(64), nullable=False),
    Column("ts", String(40), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """The stored (and hashed) form of an event; details as canonical JSON text."""
    fields = asdict(event)
    fields["details"] = json.dumps(event.details, sort_keys=True, separators=(",", ":"))
    fields["latency_ms"] = round(float(event.latency_ms), 3)
    return fields


class SqlAuditStore:
    """Append-only, hash-chained audit records in SQLite or PostgreSQL."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self.url = url
        self._sqlite = is_sqlite(url)
        # Writer: takes the write lock up front (SQLite). Reader: plain transactions, so a
        # long verification never blocks appends (WAL readers see a snapshot).
        self._writer = make_engine(url, timeout_s=timeout_s, immediate=True)
        self._reader = make_engine(url, timeout_s=timeout_s)

    # -- schema ---------------------------------------------------------------------------
    def create_schema(self) -> None:
        try:
            metadata.create_all(self._writer, checkfirst=True)
            with self._writer.begin() as conn:
                if conn.execute(select(head_table.c.id)).first() is None:
                    conn.execute(insert(head_table).values(id=1, seq=0, hash=GENESIS_HASH))
        except IntegrityError:
            pass  # another replica initialised it first
        except SQLAlchemyError as exc:
            raise AuditError("audit store cannot be initialised") from exc

    def dispose(self) -> None:
        self._writer.dispose()
        self._reader.dispose()

    # -- writes ---------------------------------------------------------------------------
    def _lock_head(self, conn: Connection) -> tuple[int, str]:
        stmt = select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)
        if not self._sqlite:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).one()
        return int(row.seq), str(row.hash)

    def append_batch(self, events: Sequence[AuditEvent]) -> list[int]:
        """Chain and durably commit ``events`` in one transaction; returns their seq numbers.

        Raises:
            AuditError: the store could not be written; nothing of the batch is committed.
        """
        if not events:
            return []
        try:
            with self._writer.begin() as conn:
                seq, prev = self._lock_head(conn)
                rows = []
                for event in events:
                    seq += 1
                    fields = event_fields(event)
                    digest = record_hash(fields, prev)
                    rows.append({**fields, "seq": seq, "prev_hash": prev, "hash": digest})
                    prev = digest
                conn.execute(insert(events_table), rows)
                conn.execute(update(head_table).where(head_table.c.id == 1).values(seq=seq,
                                                                                  hash=prev))
        except SQLAlchemyError as exc:
            raise AuditError() from exc
        return [row["seq"] for row in rows]

    def write_checkpoint(
        self, signing_key: Ed25519PrivateKey, key_id: str, ts: str
    ) -> Checkpoint | None:
        """Sign the current head unless it is already checkpointed."""
        try:
            with self._writer.begin() as conn:
                seq, head = self._lock_head(conn)
                last = conn.execute(select(func.max(checkpoints_table.c.seq))).scalar()
                if seq == 0 or (last is not None and last >= seq):
                    return None
                checkpoint = sign_checkpoint(signing_key, key_id, seq, head, ts)
                conn.execute(insert(checkpoints_table).values(
                    seq=checkpoint.seq, head_hash=checkpoint.head_hash, ts=checkpoint.ts,
                    key_id=checkpoint.key_id, signature=checkpoint.signature))
                return checkpoint
        except SQLAlchemyError as exc:
            raise AuditError() from exc

    # -- reads ----------------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            with self._reader.connect() as conn:
                conn.execute(select(head_table.c.seq)).first()
            return True
        except SQLAlchemyError:
            return False

    def head(self) -> tuple[int, str]:
        with self._reader.connect() as conn:
            row = conn.execute(select(head_table.c.seq, head_table.c.hash)).one()
            return int(row.seq), str(row.hash)

    def count(self) -> int:
        with self._reader.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events_table)).scalar() or 0)

    def iter_records(self, *, batch_size: int = 5000) -> Iterator[dict[str, Any]]:
        """Every record in seq order, in constant memory (keyset pagination)."""
        last = 0
        while True:
            with self._reader.connect() as conn:
                rows = conn.execute(
                    select(events_table).where(events_table.c.seq > last)
                    .order_by(events_table.c.seq).limit(batch_size)
                ).mappings().all()
            if not rows:
                return
            for row in rows:
                yield dict(row)
            last = int(rows[-1]["seq"])

    def checkpoints(self) -> list[Checkpoint]:
        with self._reader.connect() as conn:
            rows = conn.execute(select(checkpoints_table).order_by(checkpoints_table.c.seq)).all()
        return [Checkpoint(seq=int(r.seq), head_hash=r.head_hash, ts=r.ts, key_id=r.key_id,
                           signature=bytes(r.signature)) for r in rows]

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._reader.connect() as conn:
            rows = conn.execute(select(events_table).order_by(events_table.c.seq.desc())
                                .limit(limit)).mappings().all()
        return [dict(r) for r in rows]
