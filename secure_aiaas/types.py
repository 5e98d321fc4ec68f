"""Value objects shared across subpackages (no behaviour, no third-party imports)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
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
    # Chat and completion models: tokens (prompt + completion) per minute, whole tenant and
    # per API key, and streams open at once.
    tokens_per_minute: int | None = None
    key_tokens_per_minute: int | None = None
    max_streams: int | None = None


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
    details: dict[str, builtins.object] = field(default_factory=dict)


def _no_details() -> Mapping[str, builtins.object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AuditFacts:
    """What the steps of a request established, for its audit record: an immutable value.

    Each step returns a new one (``facts.decided(...)``, ``facts.detail(...)``) instead of
    writing into a shared object; the route layer hands the last one back and the
    middleware stores it with what only it knows (request id, route, status, latency).
    """

    principal: Principal | None = None
    action: str | None = None
    object: str | None = None
    decision: Decision | None = None
    details: Mapping[str, builtins.object] = field(default_factory=_no_details)

    def authenticated(self, principal: Principal) -> AuditFacts:
        return replace(self, principal=principal)

    def decided(self, obj: str, act: str, decision: Decision | None) -> AuditFacts:
        return replace(self, object=obj, action=act, decision=decision)

    def detail(self, **more: builtins.object) -> AuditFacts:
        """These facts plus ``more`` (a ``None`` value removes nothing and adds nothing)."""
        added = {k: v for k, v in more.items() if v is not None}
        return replace(self, details=MappingProxyType({**self.details, **added})) if added else self

    def counted(self, key: str, counts: Mapping[str, int]) -> AuditFacts:
        """Add ``counts`` (e.g. PII entity types) to the counts already under ``key``."""
        if not counts:
            return self
        merged = dict(self.details.get(key, {}))  # type: ignore[call-overload]
        for name, n in counts.items():
            merged[name] = merged.get(name, 0) + n
        return self.detail(**{key: dict(sorted(merged.items()))})
