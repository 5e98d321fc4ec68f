"""Tampering with an audit store below its API, as an attacker with the database would.

The store refuses UPDATE and DELETE on records and checkpoints, and (SQLite) a record that
does not follow the chain heads (triggers); an attacker who owns the database file or the
database can remove those triggers first. These helpers do exactly that, so the verifier's
findings are tested against a realistic adversary.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from secure_aiaas.audit import SqlAuditStore
from secure_aiaas.audit.store import SQLITE_LINK_TRIGGER

SQLITE_TRIGGERS = (
    "audit_events_no_delete",
    "audit_events_no_update",
    "audit_checkpoints_no_delete",
    "audit_checkpoints_no_update",
    SQLITE_LINK_TRIGGER,  # the attacker writes records that link wherever they like
)


def tamper(store: SqlAuditStore, statement: str, **params: Any) -> None:
    """Run ``statement`` on ``store`` with its append-only protection switched off."""
    with store._writer.begin() as conn:
        if store.url.startswith("sqlite"):
            for name in SQLITE_TRIGGERS:
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        else:  # a superuser skips ordinary triggers
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(statement), params)


def tamper_url(url: str, statement: str, **params: Any) -> None:
    """`tamper` on the store at ``url`` (e.g. a server's, from outside the process)."""
    store = SqlAuditStore(url)
    try:
        tamper(store, statement, **params)
    finally:
        store.dispose()
