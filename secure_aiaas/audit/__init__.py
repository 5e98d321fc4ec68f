"""Tamper-evident audit: hash-chained records, signed checkpoints, group-committed writes,
exports that verify offline, retention with signed purges, compliance reports.

Names are resolved lazily (PEP 562): importing ``secure_aiaas.audit.offline`` on an auditor's
machine must not pull in SQLAlchemy or a database driver.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the type checker sees the real names; at run time they load on use
    from secure_aiaas.audit.chain import Checkpoint, record_hash
    from secure_aiaas.audit.store import SqlAuditStore
    from secure_aiaas.audit.verify import VerifyReport, verify_chain, verify_store
    from secure_aiaas.audit.walk import Damage
    from secure_aiaas.audit.writer import AuditLog, AuditWriter, utc_now
    from secure_aiaas.audit.writer_process import AuditWriterProcess

_EXPORTS = {
    "AuditLog": "writer",
    "AuditWriter": "writer",
    "AuditWriterProcess": "writer_process",
    "utc_now": "writer",
    "Checkpoint": "chain",
    "record_hash": "chain",
    "SqlAuditStore": "store",
    "Damage": "walk",
    "VerifyReport": "verify",
    "verify_chain": "verify",
    "verify_store": "verify",
}

__all__ = [
    "AuditLog",
    "AuditWriter",
    "AuditWriterProcess",
    "Checkpoint",
    "Damage",
    "SqlAuditStore",
    "VerifyReport",
    "record_hash",
    "utc_now",
    "verify_chain",
    "verify_store",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
