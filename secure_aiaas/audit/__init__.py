"""Tamper-evident audit: hash-chained records, signed checkpoints, group-committed writes."""

from secure_aiaas.audit.chain import Checkpoint, record_hash
from secure_aiaas.audit.store import SqlAuditStore
from secure_aiaas.audit.verify import Damage, VerifyReport, verify_chain
from secure_aiaas.audit.writer import AuditWriter, utc_now

__all__ = [
    "AuditWriter",
    "Checkpoint",
    "Damage",
    "SqlAuditStore",
    "VerifyReport",
    "record_hash",
    "utc_now",
    "verify_chain",
]
