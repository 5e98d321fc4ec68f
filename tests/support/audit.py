"""Reading what a test's service recorded: the audit records of a store, or of one request."""

from __future__ import annotations

import json
from typing import Any

from secure_aiaas.audit import SqlAuditStore
from tests.conftest import Server


def audit_url(server: Server) -> str:
    """The URL of ``server``'s SQLite audit store (its default, under its data directory)."""
    return f"sqlite:///{server.data_dir / 'audit.db'}"


def stored_records(url: str, request_id: str | None = None) -> list[dict[str, Any]]:
    """The records of the audit store at ``url`` as stored (``details`` a JSON string), oldest
    first; only those of ``request_id`` when it is given."""
    store = SqlAuditStore(url)
    try:
        return [
            r for r in store.iter_records() if request_id is None or r["request_id"] == request_id
        ]
    finally:
        store.dispose()


def request_records(server: Server, request_id: str) -> list[dict[str, Any]]:
    """The records of ``request_id`` in ``server``'s audit store, oldest first, with their
    details decoded."""
    rows = stored_records(audit_url(server), request_id)
    for row in rows:
        row["details"] = json.loads(row["details"])
    return rows
