"""Compute scheduling: per-tenant and per-key quotas, concurrency leases, priorities.

Quotas are enforced after authentication and authorization, before a handler runs
(`Pipeline.admit`); they live in Redis when ``SAIAAS_REDIS_URL`` is set (shared by every
replica) and in this process otherwise. A request's priority (its tenant's) is carried in a
context variable that the batcher and the HE pool read through an injected callable.
"""

from __future__ import annotations

from secure_aiaas.scheduling.anonymous import AnonymousBudget, AnonymousLimiter, RefusalTally
from secure_aiaas.scheduling.priority import current_priority, set_priority
from secure_aiaas.scheduling.quotas import (
    UNLIMITED,
    UNMETERED,
    WINDOW_S,
    Admission,
    MemoryQuotas,
    QuotaExceededError,
    Quotas,
    QuotaUnavailableError,
    RedisQuotas,
    TokenGrant,
    build_quotas,
)

__all__ = [
    "UNLIMITED",
    "UNMETERED",
    "WINDOW_S",
    "TokenGrant",
    "Admission",
    "AnonymousBudget",
    "AnonymousLimiter",
    "MemoryQuotas",
    "QuotaExceededError",
    "QuotaUnavailableError",
    "Quotas",
    "RedisQuotas",
    "RefusalTally",
    "build_quotas",
    "current_priority",
    "set_priority",
]
