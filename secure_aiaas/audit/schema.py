"""Tables of the audit store (SQLAlchemy Core; one schema for SQLite and PostgreSQL).

A record's content columns are nullable only for *tombstones*: records a signed purge has
emptied (retention). A tombstone keeps ``seq``, ``ts``, ``tenant``, both links and its hash,
so the chains still verify across it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()
_SEQ = BigInteger().with_variant(Integer, "sqlite")

events_table = Table(
    "audit_events",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("ts", String(40), nullable=False, index=True),
    Column("request_id", String(64)),
    Column("tenant", String(128)),
    Column("subject", String(256)),
    Column("key_id", String(64)),
    Column("role", String(64)),
    Column("method", String(16)),
    Column("route", String(512)),
    Column("action", String(64), index=True),
    Column("object", String(256)),
    Column("decision", String(32)),
    Column("rule", String(512)),
    Column("policy_version", String(64)),
    Column("status", Integer),
    Column("latency_ms", Float),
    # Copied from details["model"] at append (and hashed like every content field), so the
    # auditor API can filter on it with an index instead of parsing JSON.
    Column("model", String(256)),
    Column("details", Text),  # NULL only in a tombstone
    # The links: two records can never follow the same one (a forked chain is refused by
    # the database). On PostgreSQL, whose concurrent transactions cannot see each other's
    # rows, unique indexes say so. SQLite has one writer at a time, so a trigger there
    # (`store.SQLITE_LINK_TRIGGER`) checks more for less: each record comes next and links
    # to both heads. The record's own hash needs no index: it covers its unique seq, and
    # nothing looks a record up by it. Indexes on random 64-hex keys are the dearest part
    # of an append (docs/benchmarks.md).
    Column("prev_hash", String(64), nullable=False),
    Column("tenant_prev_hash", String(64)),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_tenant_seq", "tenant", "seq"),
    Index("uq_audit_events_prev_hash", "prev_hash", unique=True).ddl_if(dialect="postgresql"),
    Index("uq_audit_events_tenant_prev_hash", "tenant_prev_hash", unique=True).ddl_if(
        dialect="postgresql"
    ),
)

head_table = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row per tenant: its chain head, updated in the transaction that holds audit_head's lock.
tenant_heads_table = Table(
    "audit_tenant_heads",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("checkpointed_seq", BigInteger, nullable=False, default=0),
)

checkpoints_table = Table(
    "audit_checkpoints",
    metadata,
    Column("tenant", String(128), primary_key=True),  # "*": the global chain
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("head_hash", String(64), nullable=False),
    Column("ts", String(40), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)

retention_table = Table(
    "audit_retention",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("retention_days", Integer),  # NULL: keep for ever
    Column("legal_hold", Boolean, nullable=False, default=False),
    Column("updated_at", String(40), nullable=False),
)

CONTENT_COLUMNS: tuple[str, ...] = (
    "request_id",
    "subject",
    "key_id",
    "role",
    "method",
    "route",
    "action",
    "object",
    "decision",
    "rule",
    "policy_version",
    "status",
    "latency_ms",
    "model",
    "details",
)
