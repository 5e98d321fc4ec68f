"""The audit store on SQLAlchemy Core: one schema for embedded SQLite and PostgreSQL.

Appends are serialised by the database, not by this process, so several replicas can share
one store without forking the chain: SQLite takes its write lock at ``BEGIN IMMEDIATE``;
PostgreSQL locks the single ``audit_head`` row (``SELECT ... FOR UPDATE``). Tenant heads are
updated in the same transaction, under the same lock. ``UNIQUE`` constraints on ``prev_hash``
and ``tenant_prev_hash`` make a fork impossible even if that serialisation were bypassed.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, event, func, insert, select, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.pool import PoolProxiedConnection

from secure_aiaas.audit.chain import (
    GENESIS_HASH,
    GLOBAL,
    Checkpoint,
    content_bytes,
    hash_content,
    sign_checkpoint,
    tenant_genesis,
)
from secure_aiaas.audit.schema import (
    checkpoints_table,
    events_table,
    head_table,
    metadata,
    tenant_heads_table,
)
from secure_aiaas.errors import AuditError
from secure_aiaas.storage import is_sqlite, make_engine, sqlite_file
from secure_aiaas.types import AuditEvent

# Re-exported for callers of the first format.
__all__ = [
    "MAX_DETAILS_CHARS",
    "SqlAuditStore",
    "checkpoints_table",
    "event_fields",
    "events_table",
    "head_table",
]

_STR_FIELDS = (
    "ts",
    "request_id",
    "tenant",
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
    "model",
)
# Each text column's bound, read from the schema: a value is cut to fit before it is hashed,
# so an over-long value can never fail the transaction it rides in (on PostgreSQL a too-long
# value would abort the whole group commit, every concurrent request with it).
_BOUNDS: dict[str, int] = {
    name: int(events_table.c[name].type.length)  # type: ignore[attr-defined]
    for name in _STR_FIELDS
}
# The details JSON: small, non-personal facts only. Anything larger is replaced by a marker.
MAX_DETAILS_CHARS = 8192
_CUT = "~"


def _bounded(value: Any, limit: int) -> str | None:
    """A text value as stored: NUL and other C0 controls removed, cut to ``limit``."""
    if value is None:
        return None
    text_value = value if isinstance(value, str) else str(value)
    if len(text_value) <= limit and text_value.isprintable() and text_value.isascii():
        return text_value or None  # the common case: nothing to clean
    if not text_value.isprintable():
        text_value = "".join(ch for ch in text_value if ch.isprintable())
    try:
        text_value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no database can store it as text
        text_value = text_value.encode("utf-8", "replace").decode("utf-8")
    if len(text_value) > limit:
        text_value = text_value[: limit - len(_CUT)] + _CUT
    return text_value or None


_DUMPS = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), default=lambda obj: f"<{type(obj).__name__}>"
).encode


def _details_json(details: Mapping[str, object]) -> str:
    """Canonical JSON of ``details``; never raises (an unencodable value becomes its type)."""
    try:
        encoded = _DUMPS(details)
    except (TypeError, ValueError):  # non-string keys that cannot be sorted, cycles
        encoded = '{"unencodable":true}'
    if len(encoded) > MAX_DETAILS_CHARS:
        encoded = json.dumps(
            {"truncated": True, "chars": len(encoded)}, sort_keys=True, separators=(",", ":")
        )
    return encoded


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """The stored (and hashed) form of an event; details as canonical JSON text.

    Never raises, whatever the event holds: every text is bounded and stripped of NUL and
    control characters (PostgreSQL refuses NUL in text), details always encode.
    """
    details = event.details if isinstance(event.details, Mapping) else {}
    model = details.get("model")
    try:
        latency: float | None = round(float(event.latency_ms), 3)
    except (TypeError, ValueError):
        latency = None
    fields: dict[str, Any] = {
        # Empty strings become NULL, so every export format (CSV too) round-trips exactly.
        name: _bounded(getattr(event, name), _BOUNDS[name])
        for name in _EVENT_STR_FIELDS
    }
    fields["model"] = _bounded(model, _BOUNDS["model"]) if isinstance(model, str) else None
    fields["status"] = event.status if isinstance(event.status, int) else None
    fields["latency_ms"] = latency
    fields["details"] = _details_json(details)
    return fields


_EVENT_STR_FIELDS = tuple(name for name in _STR_FIELDS if name != "model")


# The content columns in the order the raw insert lists them (after seq and the links).
_INSERT_CONTENT: tuple[str, ...] = tuple(
    c.name
    for c in events_table.columns
    if c.name not in ("seq", "prev_hash", "tenant_prev_hash", "hash")
)


class _RawSQL:
    """The append path's statements as DB-API SQL for one dialect (qmark / pyformat)."""

    def __init__(self, *, sqlite: bool) -> None:
        mark = "?" if sqlite else "%s"
        self._mark = mark
        columns = ("seq", "prev_hash", "tenant_prev_hash", "hash", *_INSERT_CONTENT)
        self.head = "SELECT seq, hash FROM audit_head WHERE id = 1" + (
            "" if sqlite else " FOR UPDATE"
        )
        self.insert_events = (
            f"INSERT INTO audit_events ({', '.join(columns)}) "
            f"VALUES ({', '.join([mark] * len(columns))})"
        )
        self.update_head = f"UPDATE audit_head SET seq = {mark}, hash = {mark} WHERE id = 1"
        self.update_tenant = (
            f"UPDATE audit_tenant_heads SET seq = {mark}, hash = {mark} WHERE tenant = {mark}"
        )
        self.insert_tenant = (
            "INSERT INTO audit_tenant_heads (tenant, checkpointed_seq, seq, "
            f"hash) VALUES ({mark}, {mark}, {mark}, {mark})"
        )

    def tenant_heads(self, count: int) -> str:
        return (
            "SELECT tenant, hash FROM audit_tenant_heads WHERE tenant IN "
            f"({', '.join([self._mark] * count)})"
        )


# -- append-only, enforced by the database -----------------------------------------------
# Neither records nor checkpoints can be changed or removed through an ordinary connection;
# only the signed purge path (retention) may empty records, inside `purge_mode`.
PURGE_FLAG = "saiaas_audit_purge"
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events "
    f"WHEN {PURGE_FLAG}() IS NOT 1 "
    "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON "
    "audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON "
    "audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END",
)
# The chain's shape, enforced by SQLite itself (PostgreSQL: unique links, `schema`): a record
# is refused unless it comes next (no gap, no second one at a seq) and links to the global
# and its tenant's heads. So no two records follow the same one, and a writer that lost
# track of the heads (a bug, another process) is refused rather than forking the chain. The
# lookups are on the primary key and the (tenant, seq) index, at their right edges.
SQLITE_LINK_TRIGGER = "audit_events_linked"
_TENANT_GENESIS_FN = "saiaas_tenant_genesis"
_SQLITE_LINKS = (
    f"CREATE TRIGGER IF NOT EXISTS {SQLITE_LINK_TRIGGER} BEFORE INSERT ON audit_events "
    "WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events) "
    "OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM audit_events WHERE seq = NEW.seq - 1), "
    f"'{GENESIS_HASH}') "
    "OR NEW.tenant_prev_hash IS NOT (CASE WHEN NEW.tenant IS NULL THEN NULL ELSE COALESCE("
    "(SELECT hash FROM audit_events WHERE tenant = NEW.tenant ORDER BY seq DESC LIMIT 1), "
    f"{_TENANT_GENESIS_FN}(NEW.tenant)) END) "
    "BEGIN SELECT RAISE(ABORT, 'audit record does not follow the chain heads'); END"
)
_PG_TRIGGERS = (
    "SELECT pg_advisory_xact_lock(hashtext('saiaas-audit-schema'))",
    """CREATE OR REPLACE FUNCTION saiaas_audit_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_events'
     AND current_setting('saiaas.audit_purge', true) = 'on' THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit records are append-only (% on %)', TG_OP, TG_TABLE_NAME;
END $$ LANGUAGE plpgsql""",
    "CREATE OR REPLACE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON "
    "audit_events FOR EACH ROW EXECUTE FUNCTION saiaas_audit_append_only()",
    "CREATE OR REPLACE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION saiaas_audit_append_only()",
    "CREATE OR REPLACE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON "
    "audit_checkpoints FOR EACH ROW EXECUTE FUNCTION saiaas_audit_append_only()",
    "CREATE OR REPLACE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON "
    "audit_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION saiaas_audit_append_only()",
)


def _as_sqlalchemy_error(exc: Exception, dialect: Dialect) -> StatementError:
    """A raw cursor's error, wrapped as SQLAlchemy would have (OperationalError for a lock
    timeout, a full disk or a lost server; IntegrityError for a forked chain): callers tell
    an outage from one record's fault by these classes."""
    return DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect)


def _register_functions(engine: Engine) -> None:
    """Every SQLite connection knows what the triggers call: the purge flag (off) and the
    tenant chains' genesis link."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.create_function(PURGE_FLAG, 0, _purge_off)
        dbapi_conn.create_function(_TENANT_GENESIS_FN, 1, tenant_genesis, deterministic=True)


def _purge_off() -> int:
    return 0


def _purge_on() -> int:
    return 1


class _AppendTurns:
    """Appenders of several processes on one SQLite file take turns through a lock file.

    SQLite's own wait for its write lock sleeps 1, 2, 5, 10, 15, 20, 25, 50… ms between
    tries: with two `serve --workers` appending, one request in a hundred waited 170–220 ms
    (p99 at 64 clients). A waiter here tries every 0.2 ms (asleep, the GIL released). The
    file only orders the appenders; SQLite's lock is still what keeps the chain whole, so
    when the file cannot be made or locked, or the wait passes the store's timeout, the
    append goes on without a turn (and SQLite decides, as before).
    """

    POLL_S = 0.0002

    def __init__(self, database: Path | None, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._fd: int | None = None
        if database is not None:
            try:
                self._fd = os.open(f"{database}.append-lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._fd = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        fd = self._fd if self._take() else None
        try:
            yield
        finally:
            if fd is not None:
                with suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _take(self) -> bool:
        fd = self._fd
        if fd is None:
            return False
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(self.POLL_S)
            except OSError:
                return False

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with suppress(OSError):
                os.close(fd)


class SqlAuditStore:
    """Append-only, hash-chained audit records in SQLite or PostgreSQL."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self.url = url
        self._sqlite = is_sqlite(url)
        # Writer: takes the write lock up front (SQLite). Reader: plain transactions, so a
        # long verification never blocks appends (WAL readers see a snapshot).
        self._writer = make_engine(url, timeout_s=timeout_s, immediate=True)
        self._reader = make_engine(url, timeout_s=timeout_s)
        if self._sqlite:
            _register_functions(self._writer)
            _register_functions(self._reader)
        self._turns = _AppendTurns(sqlite_file(url), timeout_s)
        # SQLite's appends: one connection, one thread at a time (`_append_sqlite`).
        self._append_lock = threading.Lock()
        self._append_connection: PoolProxiedConnection | None = None
        # The append path's statements, built once: SQLAlchemy memoizes compilation per
        # statement object, and appends are on every request's critical path.
        head = select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)
        self._sql_head = head if self._sqlite else head.with_for_update()
        self._raw = _RawSQL(sqlite=self._sqlite)

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
        try:
            with self._writer.begin() as conn:
                for statement in (
                    (*_SQLITE_TRIGGERS, _SQLITE_LINKS) if self._sqlite else _PG_TRIGGERS
                ):
                    conn.execute(text(statement))
        except SQLAlchemyError as exc:
            raise AuditError("audit store cannot be made append-only") from exc

    @contextmanager
    def purge_mode(self, conn: Connection) -> Iterator[None]:
        """Allow emptying records inside ``conn``'s transaction (the signed purge path only)."""
        if self._sqlite:
            dbapi = conn.connection.dbapi_connection
            dbapi.create_function(PURGE_FLAG, 0, _purge_on)  # type: ignore[union-attr]
            try:
                yield
            finally:
                dbapi.create_function(PURGE_FLAG, 0, _purge_off)  # type: ignore[union-attr]
        else:
            conn.execute(text("SET LOCAL saiaas.audit_purge = 'on'"))
            yield  # SET LOCAL ends with the transaction

    def dispose(self) -> None:
        with self._append_lock:
            connection, self._append_connection = self._append_connection, None
            if connection is not None:
                connection.close()
        self._writer.dispose()
        self._reader.dispose()
        self._turns.close()

    # -- writes ---------------------------------------------------------------------------
    def _lock_head(self, conn: Connection) -> tuple[int, str]:
        row = conn.execute(self._sql_head).one()
        return int(row.seq), str(row.hash)

    def append_batch(self, events: Sequence[AuditEvent]) -> list[int]:
        """Chain and durably commit ``events`` in one transaction; returns their seq numbers.

        Raises:
            AuditError: the store could not be written; nothing of the batch is committed.
        """
        if not events:
            return []
        return self.append_rows([event_fields(e) for e in events])

    def append_rows(self, rows: list[dict[str, Any]]) -> list[int]:
        """`append_batch` for records already in stored form (`event_fields`)."""
        if self._sqlite:
            return self._append_sqlite(rows)
        try:
            with self._turns.turn(), self._writer.begin() as conn:
                return self.append_locked(conn, rows)
        except SQLAlchemyError as exc:
            raise AuditError() from exc

    def _append_sqlite(self, rows: list[dict[str, Any]]) -> list[int]:
        """SQLite's appends, on one connection of the writer engine kept for them: BEGIN,
        the statements and COMMIT go straight to sqlite3 (a checkout, its events and its
        reset through SQLAlchemy cost ~130 µs of CPU a batch, more than two records' own work)."""
        with self._append_lock, self._turns.turn():
            if self._append_connection is None:
                try:
                    self._append_connection = self._writer.raw_connection()
                except SQLAlchemyError as exc:
                    raise AuditError() from exc
            dbapi = cast("sqlite3.Connection", self._append_connection.driver_connection)
            try:
                dbapi.execute("BEGIN IMMEDIATE")
                seqs = self._append_raw(dbapi.cursor(), rows)
                dbapi.execute("COMMIT")
            except BaseException as exc:
                self._end_failed_append(dbapi)
                if isinstance(exc, sqlite3.Error):
                    raise AuditError() from _as_sqlalchemy_error(exc, self._writer.dialect)
                raise
            return seqs

    def _end_failed_append(self, dbapi: sqlite3.Connection) -> None:
        """Roll back what a failed append began; a connection that cannot is replaced."""
        try:
            if dbapi.in_transaction:
                dbapi.execute("ROLLBACK")
        except sqlite3.Error:
            connection, self._append_connection = self._append_connection, None
            if connection is not None:
                connection.invalidate()

    def append_locked(self, conn: Connection, batch: list[dict[str, Any]]) -> list[int]:
        """Append stored-form records inside ``conn``'s transaction (takes the head lock).

        On every request's path: the statements go straight to the DB-API cursor of the
        transaction's connection (SQLAlchemy's per-statement machinery cost more than the
        rest of an append together).
        """
        try:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            return self._append_raw(cursor, batch)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _as_sqlalchemy_error(exc, conn.dialect) from exc

    def _append_raw(self, cursor: Any, batch: list[dict[str, Any]]) -> list[int]:
        sql = self._raw
        try:
            cursor.execute(sql.head)
            head_row = cursor.fetchone()
            if head_row is None:
                raise AuditError("audit store has no head row (run audit init)")
            seq, prev = int(head_row[0]), str(head_row[1])
            tenants = sorted({f["tenant"] for f in batch if f.get("tenant") is not None})
            heads: dict[str, str] = {}
            if tenants:
                cursor.execute(sql.tenant_heads(len(tenants)), tenants)
                heads = {str(t): str(h) for t, h in cursor.fetchall()}
            known = set(heads)
            values = []
            last_seq: dict[str, int] = {}
            first = seq + 1
            for fields in batch:
                seq += 1
                tenant = fields.get("tenant")
                tprev = None if tenant is None else heads.get(tenant) or tenant_genesis(tenant)
                digest = hash_content(seq, prev, tprev, content_bytes(fields))
                values.append(
                    (seq, prev, tprev, digest, *[fields.get(name) for name in _INSERT_CONTENT])
                )
                prev = digest
                if tenant is not None:
                    heads[tenant] = digest
                    last_seq[tenant] = seq
            cursor.executemany(sql.insert_events, values)
            cursor.execute(sql.update_head, (seq, prev))
            moved = [(last_seq[t], heads[t], t) for t in tenants if t in known]
            new = [(t, 0, last_seq[t], heads[t]) for t in tenants if t not in known]
            if moved:
                cursor.executemany(sql.update_tenant, moved)
            if new:
                cursor.executemany(sql.insert_tenant, new)
        finally:
            cursor.close()
        return list(range(first, seq + 1))

    def write_checkpoint(
        self, signing_key: Ed25519PrivateKey, key_id: str, ts: str
    ) -> Checkpoint | None:
        """Sign the global head unless it is already checkpointed, and every tenant head that
        moved since its last checkpoint. Returns the global checkpoint (None: nothing new)."""
        try:
            with self._turns.turn(), self._writer.begin() as conn:
                seq, head = self._lock_head(conn)
                last = conn.execute(
                    select(func.max(checkpoints_table.c.seq)).where(
                        checkpoints_table.c.tenant == GLOBAL
                    )
                ).scalar()
                if seq == 0 or (last is not None and last >= seq):
                    return None
                checkpoint = sign_checkpoint(signing_key, key_id, seq, head, ts)
                signed = [checkpoint]
                moved = conn.execute(
                    select(tenant_heads_table).where(
                        tenant_heads_table.c.seq > tenant_heads_table.c.checkpointed_seq
                    )
                ).all()
                for row in moved:
                    signed.append(
                        sign_checkpoint(
                            signing_key, key_id, int(row.seq), row.hash, ts, tenant=row.tenant
                        )
                    )
                    conn.execute(
                        update(tenant_heads_table)
                        .where(tenant_heads_table.c.tenant == row.tenant)
                        .values(checkpointed_seq=row.seq)
                    )
                conn.execute(
                    insert(checkpoints_table),
                    [
                        {
                            "tenant": c.tenant,
                            "seq": c.seq,
                            "head_hash": c.head_hash,
                            "ts": c.ts,
                            "key_id": c.key_id,
                            "signature": c.signature,
                        }
                        for c in signed
                    ],
                )
                return checkpoint
        except SQLAlchemyError as exc:
            raise AuditError() from exc

    def probe_write(self) -> bool:
        """Whether the store takes a durable write now (lock, disk, connection): rewrites
        the head row unchanged."""
        try:
            with self._writer.begin() as conn:
                conn.execute(
                    update(head_table).where(head_table.c.id == 1).values(seq=head_table.c.seq)
                )
            return True
        except SQLAlchemyError:
            return False

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

    def iter_records(
        self,
        *,
        batch_size: int = 5000,
        tenant: str | None = None,
        lo: int = 1,
        hi: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Records in seq order (optionally one tenant's, within ``lo..hi``), in constant
        memory (keyset pagination)."""
        last = lo - 1
        while True:
            stmt = select(events_table).where(events_table.c.seq > last)
            if hi is not None:
                stmt = stmt.where(events_table.c.seq <= hi)
            if tenant is not None:
                stmt = stmt.where(events_table.c.tenant == tenant)
            with self._reader.connect() as conn:
                rows = (
                    conn.execute(stmt.order_by(events_table.c.seq).limit(batch_size))
                    .mappings()
                    .all()
                )
            if not rows:
                return
            for row in rows:
                yield dict(row)
            last = int(rows[-1]["seq"])

    def checkpoints(
        self, tenant: str = GLOBAL, lo: int = 0, hi: int | None = None
    ) -> list[Checkpoint]:
        """Signed checkpoints of the global chain (or of ``tenant``'s), in seq order."""
        stmt = select(checkpoints_table).where(
            checkpoints_table.c.tenant == tenant, checkpoints_table.c.seq >= lo
        )
        if hi is not None:
            stmt = stmt.where(checkpoints_table.c.seq <= hi)
        with self._reader.connect() as conn:
            rows = conn.execute(stmt.order_by(checkpoints_table.c.seq)).all()
        return [
            Checkpoint(
                seq=int(r.seq),
                head_hash=r.head_hash,
                ts=r.ts,
                key_id=r.key_id,
                signature=bytes(r.signature),
                tenant=r.tenant,
            )
            for r in rows
        ]

    def tenant_checkpoints(self) -> list[Checkpoint]:
        """Every tenant checkpoint (for verification of the tenant chains)."""
        stmt = select(checkpoints_table).where(checkpoints_table.c.tenant != GLOBAL)
        with self._reader.connect() as conn:
            rows = conn.execute(stmt.order_by(checkpoints_table.c.seq)).all()
        return [
            Checkpoint(
                seq=int(r.seq),
                head_hash=r.head_hash,
                ts=r.ts,
                key_id=r.key_id,
                signature=bytes(r.signature),
                tenant=r.tenant,
            )
            for r in rows
        ]

    def seq_bounds(self, since: str | None, until: str | None) -> tuple[int, int] | None:
        """First and last seq of records with ``since <= ts < until`` (None: no record).

        An export covers the whole seq interval between them, so a record whose timestamp is
        slightly out of order (group commit) never leaves a gap in the exported chain.
        """
        stmt = select(func.min(events_table.c.seq), func.max(events_table.c.seq))
        if since:
            stmt = stmt.where(events_table.c.ts >= since)
        if until:
            stmt = stmt.where(events_table.c.ts < until)
        with self._reader.connect() as conn:
            lo, hi = conn.execute(stmt).one()
        return None if lo is None else (int(lo), int(hi))

    def purge_details(self) -> list[dict[str, Any]]:
        """details["purge"] of every purge record (few), with the record's seq and hash."""
        stmt = (
            select(events_table.c.seq, events_table.c.hash, events_table.c.details)
            .where(events_table.c.action == "audit.purge", events_table.c.details.is_not(None))
            .order_by(events_table.c.seq)
        )
        with self._reader.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for row in rows:
            purge = json.loads(row.details).get("purge")
            if isinstance(purge, dict):
                out.append({**purge, "record_seq": int(row.seq), "record_hash": row.hash})
        return out

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._reader.connect() as conn:
            rows = (
                conn.execute(select(events_table).order_by(events_table.c.seq.desc()).limit(limit))
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]
