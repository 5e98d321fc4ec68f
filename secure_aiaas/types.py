"""Value objects shared across subpackages (no behaviour, no third-party imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TrustLevel = Literal["trusted", "sensitive"]
TRUST_LEVELS: tuple[str, ...] = ("trusted", "sensitive")


@dataclass(frozen=True)
class TenantLimits:
    """Per-tenant compute limits (None: unlimited). Stored with the tenant."""

    requests_per_minute: int | None = None
    key_requests_per_minute: int | None = None
    max_concurrent: int | None = None
    # Higher runs first when compute is queued (0: normal).
    priority: int = 0


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from an API key, never from anything the caller asserts."""

    tenant: str
    trust: TrustLevel
    subject: str
    role: str
    key_id: str
    limits: TenantLimits = TenantLimits()
    # An operator tenant runs the service; only its keys may hold global roles.
    operator: bool = False


@dataclass(frozen=True)
class Decision:
    """An authorization outcome with the rule that decided it (None: default deny)."""

    allowed: bool
    rule: tuple[str, ...] | None
    policy_version: str
    # The enforcer failed: a denial, recorded as such.
    error: bool = False

    @property
    def rule_text(self) -> str:
        if self.error:
            return "policy-error"
        return ", ".join(self.rule) if self.rule else "default-deny"


# "attempt": written *before* a side effect (write-ahead); its outcome record follows with the
# same request_id. An attempt with no outcome is an orphan: the process died in between.
Outcome = Literal["allow", "deny", "unauthenticated", "error", "attempt"]


@dataclass
class AuditEvent:
    """One audit record: what happened, never what was in the payload."""

    ts: str
    request_id: str
    method: str
    route: str
    status: int
    decision: Outcome
    latency_ms: float
    tenant: str | None = None
    subject: str | None = None
    key_id: str | None = None
    role: str | None = None
    action: str | None = None
    object: str | None = None
    rule: str | None = None
    policy_version: str | None = None
    # Small, non-personal facts only: model version, entity type counts, ciphertext digests.
    details: dict[str, object] = field(default_factory=dict)
