"""Where tenants' public contexts live: shared by replicas, encrypted at rest, expiring.

A registered context is metadata (owner, model, plan fingerprint, expiry) plus the uploaded
bytes sealed with AES-256-GCM under the server's data key (associated data: the context id).
`SqlContextStore` keeps both in the shared registry database, so a context uploaded through one
replica serves requests on every replica; `MemoryContextStore` serves one process (library
tests, tools).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from secure_aiaas.errors import StoreUnavailableError
from secure_aiaas.storage import create_tables, make_engine


@dataclass(frozen=True)
class ContextRecord:
    context_id: str
    model: str
    fingerprint: str
    owner: str
    nbytes: int
    expires_at: float


class ContextStore(Protocol):
    def put(self, record: ContextRecord, sealed: bytes) -> None: ...
    def get(self, context_id: str) -> ContextRecord | None: ...
    def sealed_blob(self, context_id: str) -> bytes | None: ...
    def delete(self, context_id: str) -> bool: ...
    def purge_expired(self) -> list[str]: ...
    def count(self) -> int: ...
    def usage(self, owner_prefix: str) -> tuple[int, int]: ...


class MemoryContextStore:
    """One process's contexts (no sharing between replicas)."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[ContextRecord, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, record: ContextRecord, sealed: bytes) -> None:
        with self._lock:
            self._items[record.context_id] = (record, sealed)

    def get(self, context_id: str) -> ContextRecord | None:
        item = self._items.get(context_id)
        if item is None or item[0].expires_at <= time.time():
            return None
        return item[0]

    def sealed_blob(self, context_id: str) -> bytes | None:
        item = self._items.get(context_id)
        return None if item is None else item[1]

    def delete(self, context_id: str) -> bool:
        with self._lock:
            return self._items.pop(context_id, None) is not None

    def purge_expired(self) -> list[str]:
        now = time.time()
        with self._lock:
            gone = [cid for cid, (rec, _) in self._items.items() if rec.expires_at <= now]
            for cid in gone:
                del self._items[cid]
        return gone

    def count(self) -> int:
        return len(self._items)

    def usage(self, owner_prefix: str) -> tuple[int, int]:
        """Live contexts whose owner starts with ``owner_prefix``: (count, uploaded bytes)."""
        now = time.time()
        live = [
            rec
            for rec, _ in self._items.values()
            if rec.owner.startswith(owner_prefix) and rec.expires_at > now
        ]
        return len(live), sum(rec.nbytes for rec in live)


metadata = MetaData()
contexts_table = Table(
    "he_contexts",
    metadata,
    Column("context_id", String(64), primary_key=True),
    Column("model", String(128), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("owner", String(256), nullable=False, index=True),
    Column("nbytes", Integer, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("sealed", LargeBinary, nullable=False),
)


class SqlContextStore:
    """Contexts in the shared registry database (SQLite or PostgreSQL)."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self._engine = make_engine(url, timeout_s=timeout_s)

    def create_schema(self) -> None:
        create_tables(metadata, self._engine)

    def dispose(self) -> None:
        self._engine.dispose()

    def put(self, record: ContextRecord, sealed: bytes) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(contexts_table).values(**record.__dict__, sealed=sealed))
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc

    def get(self, context_id: str) -> ContextRecord | None:
        columns = [c for c in contexts_table.c if c.name != "sealed"]
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(*columns).where(
                        contexts_table.c.context_id == context_id,
                        contexts_table.c.expires_at > time.time(),
                    )
                ).first()
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc
        return None if row is None else ContextRecord(**row._asdict())

    def sealed_blob(self, context_id: str) -> bytes | None:
        try:
            with self._engine.connect() as conn:
                value = conn.execute(
                    select(contexts_table.c.sealed).where(contexts_table.c.context_id == context_id)
                ).scalar()
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc
        return None if value is None else bytes(value)

    def delete(self, context_id: str) -> bool:
        try:
            with self._engine.begin() as conn:
                result = conn.execute(
                    delete(contexts_table).where(contexts_table.c.context_id == context_id)
                )
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc
        return bool(result.rowcount)

    def purge_expired(self) -> list[str]:
        now = time.time()
        try:
            with self._engine.begin() as conn:
                gone = list(
                    conn.execute(
                        select(contexts_table.c.context_id).where(
                            contexts_table.c.expires_at <= now
                        )
                    ).scalars()
                )
                if gone:
                    conn.execute(
                        delete(contexts_table).where(contexts_table.c.context_id.in_(gone))
                    )
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc
        return gone

    def count(self) -> int:
        try:
            with self._engine.connect() as conn:
                return int(
                    conn.execute(
                        select(func.count())
                        .select_from(contexts_table)
                        .where(contexts_table.c.expires_at > time.time())
                    ).scalar()
                    or 0
                )
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc

    def usage(self, owner_prefix: str) -> tuple[int, int]:
        """Live contexts whose owner starts with ``owner_prefix``: (count, uploaded bytes)."""
        c = contexts_table.c
        try:
            with self._engine.connect() as conn:
                count, total = conn.execute(
                    select(func.count(), func.coalesce(func.sum(c.nbytes), 0)).where(
                        c.owner.startswith(owner_prefix, autoescape=True),
                        c.expires_at > time.time(),
                    )
                ).one()
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc
        return int(count), int(total)
