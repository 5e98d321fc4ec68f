"""SQLAlchemy engines for the shared stores (embedded SQLite or PostgreSQL).

Durability is part of the contract: SQLite runs in WAL mode with ``synchronous=FULL``;
PostgreSQL sessions run with ``synchronous_commit=on``. Both wait at most ``timeout_s`` for a
lock, so a blocked store turns into a refused request (503) instead of a hung one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from secure_aiaas.errors import StoreUnavailableError


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalise_url(url)).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The database file of a file-backed SQLite URL (None: another backend, in memory)."""
    sa_url = make_url(normalise_url(url))
    if sa_url.get_backend_name() != "sqlite" or not sa_url.database:
        return None
    return None if sa_url.database == ":memory:" else Path(sa_url.database)


def redacted(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    return make_url(normalise_url(url)).render_as_string(hide_password=True)


def make_engine(url: str, *, timeout_s: float = 2.0, immediate: bool = False) -> Engine:
    """An engine for ``url``.

    Args:
        url: ``sqlite:///path`` or ``postgresql://...``.
        timeout_s: how long a statement may wait for a lock before failing.
        immediate: SQLite only: take the write lock at BEGIN (``BEGIN IMMEDIATE``), so a
            read-then-write transaction (reading the chain head, appending after it) can never
            interleave with another writer, in this process or another.
    """
    sa_url = make_url(normalise_url(url))
    if sa_url.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file 0600 ourselves: SQLite gives its -wal/-shm files the same mode.
            # Only when it is new: closing any handle on an open SQLite file drops the
            # process's POSIX locks on it, and another process could then delete the WAL.
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                pass
        engine = create_engine(
            sa_url,
            connect_args={"timeout": timeout_s, "check_same_thread": False},
        )
        _configure_sqlite(engine, timeout_s=timeout_s, immediate=immediate)
        return engine

    timeout_ms = int(timeout_s * 1000)
    options = (
        f"-c synchronous_commit=on -c lock_timeout={timeout_ms} "
        f"-c statement_timeout={timeout_ms * 5} -c idle_in_transaction_session_timeout=60000"
    )
    query: dict[str, Any] = dict(sa_url.query)
    if "options" in query:  # e.g. a search_path chosen by the caller
        options = f"{query.pop('options')} {options}"
        sa_url = sa_url.set(query=query)
    return create_engine(
        sa_url,
        pool_pre_ping=True,
        pool_size=4,
        max_overflow=8,
        connect_args={"options": options, "connect_timeout": max(1, int(timeout_s))},
    )


def _configure_sqlite(engine: Engine, *, timeout_s: float, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit one is deferred).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_tables(metadata: MetaData, engine: Engine) -> None:
    """Create missing tables; another replica creating them at the same moment is fine.

    Raises:
        StoreUnavailableError: the store cannot be reached or written.
    """
    try:
        metadata.create_all(engine, checkfirst=True)
    except IntegrityError:
        pass  # created concurrently by another replica
    except SQLAlchemyError as exc:
        raise StoreUnavailableError() from exc
