"""Reading what a test's server recorded: the audit records of one request."""

from __future__ import annotations

import json
from typing import Any

from secure_aiaas.audit import SqlAuditStore
from tests.conftest import Server


def request_records(server: Server, request_id: str) -> list[dict[str, Any]]:
    """The records of ``request_id`` in ``server``'s SQLite audit store, oldest first, with
    their details decoded."""
    store = SqlAuditStore(f"sqlite:///{server.data_dir / 'audit.db'}")
    try:
        rows = [r for r in store.iter_records() if r["request_id"] == request_id]
    finally:
        store.dispose()
    for row in rows:
        row["details"] = json.loads(row["details"])
    return rows
