"""The request spine as plain async code: authenticate → authorize → admit → (handler) → audit.

Routes stay thin: they declare what they touch (object, action) and the pipeline does the
rest. It knows the concern packages only through their public APIs and holds no state
another replica would need (tenants, keys, policy and audit live in the shared stores).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from secure_aiaas.audit import AuditWriter, utc_now
from secure_aiaas.auth import Registry
from secure_aiaas.errors import OverloadedError, PrivacyError
from secure_aiaas.names import MODEL_RE, TENANT_RE
from secure_aiaas.policy import PolicyEngine
from secure_aiaas.scheduling import (
    UNLIMITED,
    Admission,
    AnonymousLimiter,
    Quotas,
    QuotaUnavailableError,
    RefusalTally,
    set_priority,
)
from secure_aiaas.types import AuditEvent, Decision, Principal

if TYPE_CHECKING:
    from secure_aiaas.he import HEPool
    from secure_aiaas.inference import ModelPool
    from secure_aiaas.metrics import Metrics
    from secure_aiaas.privacy import (
        ConversationResult,
        ScrubberService,
        ScrubResult,
        TenantKeys,
    )


class Pipeline:
    def __init__(self, registry: Registry, policy: PolicyEngine, audit: AuditWriter, *,
                 anonymous: AnonymousLimiter, refusals: RefusalTally,
                 object_key: bytes) -> None:
        self.registry = registry
        self.policy = policy
        self.audit = audit
        self.anonymous = anonymous
        self.refusals = refusals
        # Keys the short hash that stands in the trail for an identifier nobody vouched for.
        self._object_key = object_key
        # Capabilities plugged in by the lifespan (None: not served by this process).
        self.models: ModelPool | None = None
        self.he: HEPool | None = None
        self.he_context_ttl_s: float = 0.0
        self.scrubber: ScrubberService | None = None
        self.privacy_keys: Callable[[str], TenantKeys] | None = None
        # Compute scheduling and observability, plugged in by the lifespan.
        self.quotas: Quotas | None = None
        self.metrics: Metrics | None = None

    def model_pool(self) -> ModelPool:
        """The plaintext model pool; 503 while it is not loaded."""
        if self.models is None or not self.models.ready:
            raise OverloadedError("models are not loaded yet", retry_after=5)
        return self.models

    async def authenticate(self, api_key: str) -> Principal:
        """The principal behind ``api_key`` (AuthenticationError otherwise)."""
        if self.registry.local:
            # Embedded SQLite in WAL mode: a read never waits for a lock and takes ~0.1 ms,
            # less than the hop to a worker thread would cost.
            return self.registry.authenticate(api_key)
        return await anyio.to_thread.run_sync(self.registry.authenticate, api_key)

    def authorize(self, principal: Principal, obj: str, act: str) -> Decision:
        """The policy's decision; PolicyUnavailableError (→ 503) when none is loaded."""
        return self.policy.decide(principal, obj, act)

    async def admit(self, principal: Principal) -> Admission:
        """Take the request's place within its tenant's quotas; release it when answered.

        Sets the request's priority (its tenant's) for the compute queues. Raises
        `QuotaExceededError` (429 + Retry-After) over a limit, `QuotaUnavailableError` (503)
        when the quota store cannot be asked: a limited tenant is never let through unchecked.
        """
        set_priority(principal.limits.priority)
        if self.quotas is None:
            limits = principal.limits
            if limits.requests_per_minute or limits.key_requests_per_minute \
                    or limits.max_concurrent:
                raise QuotaUnavailableError(retry_after=5)
            return UNLIMITED
        return await self.quotas.admit(principal)

    async def record(self, event: AuditEvent) -> int:
        """Durably append ``event``; AuditError (→ 503) when it could not be stored."""
        return await self.audit.append(event)

    async def admit_anonymous(self, address: str) -> bool:
        """Whether a request without a valid key from ``address`` gets its own record; when
        not, it is counted into the next aggregate record instead."""
        key = self.refusals.address_key(address)
        if await self.anonymous.admit(key):
            return True
        self.refusals.count(key)
        return False

    async def flush_refusals(self) -> None:
        """Write the anonymous refusals counted since the last flush as one record."""
        taken = self.refusals.take()
        if taken is None:
            return
        details, counts, since = taken
        try:
            await self.record(AuditEvent(
                ts=utc_now(), request_id=uuid.uuid4().hex, method="*", route="anonymous",
                status=429, decision="unauthenticated", latency_ms=0.0,
                action="anonymous.refused", details={"refusals": details}))
        except BaseException:
            self.refusals.give_back(counts, since)
            raise

    def tenant_exists(self, name: str) -> bool:
        """Whether ``name`` is a tenant (blocking: a registry read)."""
        from secure_aiaas.errors import NotFoundError

        if not TENANT_RE.match(name):
            return False
        try:
            self.registry.get_tenant(name)
        except NotFoundError:
            return False
        return True

    def knows(self, kind: str, name: str) -> bool:
        """Whether ``name`` is a served object of ``kind`` ("model", "he-model")."""
        if not MODEL_RE.match(name):
            return False
        if kind == "model":
            return self.models is not None and self.models.serves(name)
        if kind == "he-model":
            return self.he is not None and self.he.has_plan(name)
        return False

    def unvouched(self, kind: str, value: str) -> str:
        """What the trail records for an identifier the service could not vouch for: a
        fixed marker and a short keyed hash (repeats correlate; the value is not kept)."""
        digest = hmac.new(self._object_key, value.encode("utf-8", "replace"),
                          hashlib.sha256).hexdigest()[:12]
        return f"{kind}:~unknown-{digest}"

    async def scrub(self, principal: Principal, texts: list[str], *,
                    model: str | None = None) -> list[ScrubResult]:
        """Scrub personal data from plaintext before any model, log or store sees it.

        Fail closed: without a working scrubber the request is refused (PrivacyError, 503),
        never passed on unscrubbed.
        """
        scrubber, keys = self._scrubber_for(principal)
        return await scrubber.scrub_texts(texts, tenant=principal.tenant, model=model,
                                          keys=keys)

    async def scrub_conversation(self, principal: Principal, texts: list[str], *,
                                 model: str | None = None) -> ConversationResult:
        """`scrub` for the messages of one conversation: one placeholder map for all of them.

        The result's ``placeholders`` (placeholder → original value) is for restoring values
        in this request's answer only: never logged, recorded or stored.
        """
        scrubber, keys = self._scrubber_for(principal)
        return await scrubber.scrub_conversation(texts, tenant=principal.tenant, model=model,
                                                 keys=keys)

    def _scrubber_for(self, principal: Principal) -> tuple[ScrubberService, TenantKeys]:
        if self.scrubber is None or not self.scrubber.ready or self.privacy_keys is None:
            raise PrivacyError()
        return self.scrubber, self.privacy_keys(principal.tenant)

    async def scrub_json(self, principal: Principal, obj: object, *,
                         model: str | None = None) -> tuple[object, dict[str, int]]:
        """`scrub` for a JSON value: every string, number and key (a number holding a card or
        phone number comes back as a redacted string)."""
        scrubber, keys = self._scrubber_for(principal)
        result = await scrubber.scrub_json(obj, tenant=principal.tenant, model=model, keys=keys)
        return result.value, result.counts

    def he_pool(self) -> HEPool:
        """The encrypted-inference pool; 503 while it is not running."""
        if self.he is None:
            raise OverloadedError("encrypted inference is not available", retry_after=5)
        return self.he

    @staticmethod
    def count_tokens(served: object, texts: list[str]) -> int:
        """Tokens the model saw (OpenAI's `usage`); 0 for models without a tokenizer."""
        tokenizer = getattr(getattr(served, "predictor", None), "tokenizer", None)
        if tokenizer is None:
            return 0
        return sum(len(encoding.ids) for encoding in tokenizer.encode_batch(texts))

