"""The request spine as plain async code: authenticate → authorize → admit → scrub →
infer/evaluate → audit.

Every collaborator is handed to the constructor (a capability this process does not serve
is ``None``, and its accessor answers 503). Each step returns values — the caller, a
decision, an admission, scrubbed texts, model outputs — and the steps that learn something
for the audit record take the request's `AuditFacts` and return new ones; nothing is
written into a shared object. Routes compose these steps and hand the final facts back.
The pipeline knows the concern packages only through their public APIs and holds no state
another replica would need (tenants, keys, policy and audit live in the shared stores).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from secure_aiaas.audit import AuditLog, utc_now
from secure_aiaas.auth import Registry
from secure_aiaas.errors import NotFoundError, OverloadedError, PrivacyError
from secure_aiaas.names import MODEL_RE, TENANT_RE
from secure_aiaas.policy import PolicyEngine
from secure_aiaas.scheduling import (
    UNLIMITED,
    UNMETERED,
    Admission,
    AnonymousLimiter,
    QuotaExceededError,
    Quotas,
    QuotaUnavailableError,
    RefusalTally,
    TokenGrant,
    set_priority,
)
from secure_aiaas.types import AuditEvent, AuditFacts, Decision, Principal

if TYPE_CHECKING:
    from secure_aiaas.he import HEPool
    from secure_aiaas.inference import ModelPool
    from secure_aiaas.llm import ChatModelPool, LLMService
    from secure_aiaas.metrics import Metrics
    from secure_aiaas.privacy import (
        ConversationResult,
        Profile,
        ScrubberService,
        ScrubResult,
        TenantKeys,
    )


@dataclass(frozen=True)
class Capabilities:
    """What this process serves besides the spine (``None``: not served here → 503)."""

    models: ModelPool | None = None
    he: HEPool | None = None
    scrubber: ScrubberService | None = None
    chat: ChatModelPool | None = None
    privacy_keys: Callable[[str], TenantKeys] | None = None
    he_context_ttl_s: float = 0.0
    # What readiness waits for: the capabilities this process is configured to serve.
    expected: frozenset[str] = frozenset()

    def readiness(self) -> dict[str, bool]:
        """Each expected capability: is it up?"""
        checks = {
            "models": self.models is not None and self.models.ready,
            "scrubber": self.scrubber is not None and self.scrubber.ready,
            "he": self.he is not None,
            "chat": self.chat is not None and self.chat.ready,
        }
        return {name: ok for name, ok in checks.items() if name in self.expected}


class _PrincipalCache:
    """Principals by key digest for ``ttl_s`` (< 1 s: a revoked key stops within a second).

    A lookup costs a database round trip (or a SQLAlchemy checkout on SQLite); under load the
    same few keys arrive hundreds of times a second. Unknown keys are never cached: a flood
    of wrong keys costs lookups, not memory.
    """

    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, digest: str) -> Principal | None:
        if self._ttl <= 0:
            return None
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self._ttl:
            self._entries.pop(digest, None)
            return None
        return entry[1]

    def put(self, digest: str, principal: Principal) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[digest] = (time.monotonic(), principal)


class Pipeline:
    def __init__(
        self,
        *,
        registry: Registry,
        policy: PolicyEngine,
        audit: AuditLog,
        quotas: Quotas | None,
        anonymous: AnonymousLimiter,
        refusals: RefusalTally,
        object_key: bytes,
        capabilities: Capabilities = Capabilities(),
        metrics: Metrics | None = None,
        principal_ttl_s: float = 0.5,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.audit = audit
        self.quotas = quotas
        self.anonymous = anonymous
        self.refusals = refusals
        self.metrics = metrics
        self.capabilities = capabilities
        # Keys the short hash that stands in the trail for an identifier nobody vouched for.
        self._object_key = object_key
        self._principals = _PrincipalCache(principal_ttl_s)

    # -- capabilities ---------------------------------------------------------------------
    @property
    def models(self) -> ModelPool | None:
        return self.capabilities.models

    @property
    def he(self) -> HEPool | None:
        return self.capabilities.he

    @property
    def scrubber(self) -> ScrubberService | None:
        return self.capabilities.scrubber

    @property
    def chat(self) -> ChatModelPool | None:
        return self.capabilities.chat

    @property
    def privacy_keys(self) -> Callable[[str], TenantKeys] | None:
        return self.capabilities.privacy_keys

    @property
    def he_context_ttl_s(self) -> float:
        return self.capabilities.he_context_ttl_s

    def model_pool(self) -> ModelPool:
        """The plaintext model pool; 503 while it is not loaded."""
        models = self.capabilities.models
        if models is None or not models.ready:
            raise OverloadedError("models are not loaded yet", retry_after=5)
        return models

    def he_pool(self) -> HEPool:
        """The encrypted-inference pool; 503 while it is not running."""
        if self.capabilities.he is None:
            raise OverloadedError("encrypted inference is not available", retry_after=5)
        return self.capabilities.he

    # -- 1. authenticate ------------------------------------------------------------------
    async def authenticate(self, api_key: str) -> Principal:
        """The principal behind ``api_key`` (AuthenticationError otherwise)."""
        digest = self.registry.digest(api_key)
        cached = self._principals.get(digest)
        if cached is not None:
            return cached
        if self.registry.local:
            # Embedded SQLite in WAL mode: a read never waits for a lock and takes ~0.1 ms,
            # less than the hop to a worker thread would cost.
            principal = self.registry.authenticate(api_key)
        else:
            principal = await anyio.to_thread.run_sync(self.registry.authenticate, api_key)
        self._principals.put(digest, principal)
        return principal

    # -- 2. authorize ---------------------------------------------------------------------
    def authorize(self, principal: Principal, obj: str, act: str) -> Decision:
        """The policy's decision; PolicyUnavailableError (→ 503) when none is fresh."""
        return self.policy.decide(principal, obj, act)

    # -- 3. admit -------------------------------------------------------------------------
    async def admit(self, principal: Principal) -> Admission:
        """Take the request's place within its tenant's quotas; release it when answered.

        Sets the request's priority (its tenant's) for the compute queues. Raises
        `QuotaExceededError` (429 + Retry-After) over a limit, `QuotaUnavailableError` (503)
        when the quota store cannot be asked: a limited tenant is never let through unchecked.
        """
        set_priority(principal.limits.priority)
        if self.quotas is None:
            limits = principal.limits
            if (
                limits.requests_per_minute
                or limits.key_requests_per_minute
                or limits.max_concurrent
            ):
                raise QuotaUnavailableError(retry_after=5)
            return UNLIMITED
        return await self.quotas.admit(principal)

    # -- 4. scrub -------------------------------------------------------------------------
    def _scrubber_for(self, principal: Principal) -> tuple[ScrubberService, TenantKeys]:
        scrubber, keys_of = self.capabilities.scrubber, self.capabilities.privacy_keys
        if scrubber is None or not scrubber.ready or keys_of is None:
            raise PrivacyError()
        return scrubber, keys_of(principal.tenant)

    async def scrub(
        self,
        principal: Principal,
        texts: Sequence[str],
        facts: AuditFacts,
        *,
        model: str | None = None,
    ) -> tuple[list[ScrubResult], AuditFacts]:
        """Scrub personal data from plaintext before any model, log or store sees it.

        Fail closed: without a working scrubber the request is refused (PrivacyError, 503),
        never passed on unscrubbed. The facts gain the entity type counts (never values).
        """
        scrubber, keys = self._scrubber_for(principal)
        results = await scrubber.scrub_texts(
            list(texts), tenant=principal.tenant, model=model, keys=keys
        )
        return results, facts.counted("pii", _counts(results))

    async def scrub_conversation(
        self,
        principal: Principal,
        texts: Sequence[str],
        facts: AuditFacts,
        *,
        model: str | None = None,
    ) -> tuple[ConversationResult, AuditFacts]:
        """`scrub` for the messages of one conversation: one placeholder map for all of them.

        The result's ``placeholders`` (placeholder → original value) is for restoring values
        in this request's answer only: never logged, recorded or stored.
        """
        scrubber, keys = self._scrubber_for(principal)
        result = await scrubber.scrub_conversation(
            list(texts), tenant=principal.tenant, model=model, keys=keys
        )
        return result, facts.counted("pii", _counts(result.results))

    async def scrub_json(
        self, principal: Principal, obj: object, facts: AuditFacts, *, model: str | None = None
    ) -> tuple[object, dict[str, int], AuditFacts]:
        """`scrub` for a JSON value: every string, number and key (a number holding a card or
        phone number comes back as a redacted string)."""
        scrubber, keys = self._scrubber_for(principal)
        result = await scrubber.scrub_json(obj, tenant=principal.tenant, model=model, keys=keys)
        return result.value, result.counts, facts.counted("pii", result.counts)

    # -- 5. infer -------------------------------------------------------------------------
    def served_model(
        self, name: str, version: str | None, facts: AuditFacts
    ) -> tuple[Any, AuditFacts]:
        """The served model (version) and the facts naming it; 404 (with those facts)."""
        try:
            served = self.model_pool().get(name, version)
        except NotFoundError as exc:
            raise exc.with_facts(facts) from None
        return served, facts.detail(model=name, model_version=served.manifest.version)

    async def infer(
        self,
        principal: Principal,
        served: Any,
        inputs: Any,
        facts: AuditFacts,
    ) -> tuple[dict[str, Any], AuditFacts]:
        """Run a plaintext model on ``inputs``; text inputs are scrubbed first (never reach
        the model unscrubbed). Returns the outputs by name."""
        if isinstance(inputs, list):
            results, facts = await self.scrub(principal, inputs, facts, model=served.manifest.name)
            inputs = [r.text for r in results]
        return await served.infer(inputs), facts

    def chat_model(self, name: str, facts: AuditFacts) -> tuple[LLMService, AuditFacts]:
        """A served chat model and the facts naming it; 404 (with those facts)."""
        chat = self.capabilities.chat
        if chat is None:
            raise OverloadedError("chat models are not available", retry_after=5)
        try:
            service = chat.get(name)
        except NotFoundError as exc:
            raise exc.with_facts(facts) from None
        return service, facts.detail(model=name, model_version=service.version)

    def privacy_profile(self, principal: Principal, model: str | None) -> Profile:
        """The privacy profile that applies to this tenant and model."""
        scrubber, _ = self._scrubber_for(principal)
        return scrubber.profile_for(principal.tenant, model)

    async def admit_tokens(
        self, principal: Principal, needed: int, facts: AuditFacts
    ) -> TokenGrant:
        """Room for ``needed`` tokens and a stream slot within the tenant's limits (429 /
        503 with the facts, as `admit`)."""
        if self.quotas is None:
            limits = principal.limits
            if limits.tokens_per_minute or limits.key_tokens_per_minute or limits.max_streams:
                raise QuotaUnavailableError(retry_after=5).with_facts(facts)
            return UNMETERED
        try:
            return await self.quotas.admit_tokens(principal, needed)
        except QuotaExceededError as exc:
            raise exc.with_facts(facts.detail(quota=exc.limit)) from None
        except QuotaUnavailableError as exc:
            raise exc.with_facts(facts) from None

    @staticmethod
    def count_tokens(served: object, texts: list[str]) -> int:
        """Tokens the model saw (OpenAI's `usage`); 0 for models without a tokenizer."""
        tokenizer = getattr(getattr(served, "predictor", None), "tokenizer", None)
        if tokenizer is None:
            return 0
        return sum(len(encoding.ids) for encoding in tokenizer.encode_batch(texts))

    # -- 6. audit -------------------------------------------------------------------------
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
            await self.record(
                AuditEvent(
                    ts=utc_now(),
                    request_id=uuid.uuid4().hex,
                    method="*",
                    route="anonymous",
                    status=429,
                    decision="unauthenticated",
                    latency_ms=0.0,
                    action="anonymous.refused",
                    details={"refusals": details},
                )
            )
        except BaseException:
            self.refusals.give_back(counts, since)
            raise

    # -- identifiers the trail may hold -----------------------------------------------------
    def tenant_exists(self, name: str) -> bool:
        """Whether ``name`` is a tenant (blocking: a registry read)."""
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
            models = self.capabilities.models
            return models is not None and models.serves(name)
        if kind == "he-model":
            he = self.capabilities.he
            return he is not None and he.has_plan(name)
        if kind == "llm":
            chat = self.capabilities.chat
            return chat is not None and name in {s.name for s in chat.services()}
        return False

    def unvouched(self, kind: str, value: str) -> str:
        """What the trail records for an identifier the service could not vouch for: a
        fixed marker and a short keyed hash (repeats correlate; the value is not kept)."""
        digest = hmac.new(
            self._object_key, value.encode("utf-8", "replace"), hashlib.sha256
        ).hexdigest()[:12]
        return f"{kind}:~unknown-{digest}"


def _counts(results: Sequence[ScrubResult]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for result in results:
        total.update(result.entity_counts())
    return dict(total)
