"""Casbin RBAC with domains: decisions with the rule that made them, and hot reload.

The live enforcer is replaced whole, never edited in place: a reload builds and validates a
new one from its origin (the policy directory, or the version published to the shared
database: see `origins` and `published`) and swaps the reference, so a request sees either
the old policy or the new one. An invalid version is rejected (logged; readiness shows it)
and the last good policy stays — but only for ``stale_after_s``: a policy that cannot be
confirmed against its origin for longer (files deleted, unreadable or broken; a publication
refused; the database unreachable) stops deciding and every request is refused (503).
With no policy loaded, every request is refused too; an enforcer that raises is a denial.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import casbin  # no stubs or py.typed
import structlog

from secure_aiaas.errors import PolicyUnavailableError, StoreUnavailableError
from secure_aiaas.names import CUSTOMER_DOMAIN, GLOBAL_ROLES, OPERATOR_DOMAIN, SUBJECT_PREFIX
from secure_aiaas.policy.loader import PolicySource, PolicyValidationError, build_enforcer
from secure_aiaas.policy.origins import FileOrigin, PolicyOrigin
from secure_aiaas.types import Decision, Principal

log = structlog.get_logger(__name__)
_CACHE_LIMIT = 4096
_MIN_CHECK_GAP_S = 0.05


@dataclass(frozen=True)
class LoadedPolicy:
    source: PolicySource
    enforcer: casbin.Enforcer
    allow_explainer: casbin.Enforcer

    def rule_origin(self, rule: tuple[str, ...]) -> str | None:
        for line in self.source.lines:
            if line.ptype == "p" and line.fields == rule:
                return line.source
        return None


class PolicyNotices(Protocol):
    """Something that wakes the watcher when a new policy may be there (Redis pub/sub)."""

    def start(self, on_notice: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...


class PolicyEngine:
    """The current policy, its decisions, and a watcher that reloads it when it changes."""

    def __init__(
        self,
        origin: Path | PolicyOrigin,
        *,
        model_file: str = "model.conf",
        policy_file: str = "policy.csv",
        reload_interval_s: float = 0.5,
        stale_after_s: float = 60.0,
        notices: PolicyNotices | None = None,
    ) -> None:
        """Args:
        origin: the policy directory, or another origin (the published policy).
        model_file, policy_file: file names within a policy directory.
        reload_interval_s: how often the watcher checks the origin.
        stale_after_s: how long a policy that cannot be confirmed keeps deciding.
        notices: wakes the watcher at once when a new version is announced.
        """
        self.origin: PolicyOrigin = (
            FileOrigin(origin, model_file, policy_file) if isinstance(origin, Path) else origin
        )
        self._interval = reload_interval_s
        self._stale_after = stale_after_s
        self._notices = notices
        # When the loaded policy was last confirmed to be what the origin says (monotonic).
        self._confirmed_at = 0.0
        self._watching = False
        self._current: LoadedPolicy | None = None
        self._cache: dict[tuple[str | bool, ...], Decision] = {}
        # Casbin's role manager creates role nodes lazily during enforce(): serialise it.
        self._lock = threading.Lock()
        # One check of the origin at a time (the watcher, a notice, a caller).
        self._reload_lock = threading.Lock()
        self._stamp: Hashable = None
        self._unreachable = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    # -- loading --------------------------------------------------------------------------
    def load(self) -> LoadedPolicy:
        """Load from the origin; raises PolicyValidationError (or StoreUnavailableError) and
        keeps the previous policy."""
        stamp, source = self.origin.read()
        loaded = LoadedPolicy(
            source=source,
            enforcer=build_enforcer(source),
            allow_explainer=build_enforcer(source, explain_allows=True),
        )
        with self._lock:
            self._current = loaded
            self._cache = {}
        self._stamp = stamp
        self.last_error = None
        self._confirmed_at = time.monotonic()
        return loaded

    def reload_if_changed(self) -> bool:
        """Reload when the origin changed. Returns True when a new policy went live.

        An origin that cannot be reached confirms nothing: the loaded policy ages towards
        ``stale_after_s``, and the next check that reaches it confirms it again.
        """
        with self._reload_lock:
            try:
                stamp = self.origin.stamp()
            except StoreUnavailableError:
                self._note_unreachable()
                return False
            self._note_reachable()
            if stamp == self._stamp:
                if self.last_error is None:
                    self._confirmed_at = time.monotonic()  # the origin still says what we enforce
                return False
            previous = self.version
            try:
                loaded = self.load()
            except StoreUnavailableError:
                self._note_unreachable()  # not refused: read again on the next tick
                return False
            except PolicyValidationError as exc:
                self._stamp = stamp  # don't retry a refused version until the origin changes
                self.last_error = "; ".join(exc.errors)
                log.error(
                    "policy.reload_rejected",
                    origin=self.origin.kind,
                    errors=exc.errors,
                    kept_version=previous,
                    refused_after_s=self._stale_after,
                )
                return False
            if loaded.source.version != previous:
                log.info(
                    "policy.reloaded",
                    origin=self.origin.kind,
                    version=loaded.source.version,
                    previous=previous,
                )
            return True

    def _note_unreachable(self) -> None:
        if not self._unreachable:  # once per outage, not once per tick
            log.error(
                "policy.origin_unreachable",
                origin=self.origin.kind,
                version=self.version,
                refused_after_s=self._stale_after,
            )
        self._unreachable = True

    def _note_reachable(self) -> None:
        if self._unreachable:
            log.info("policy.origin_reachable", origin=self.origin.kind)
        self._unreachable = False

    def wake(self) -> None:
        """Check the origin now (a notice said a new version may be there)."""
        self._wake.set()

    def start_watching(self) -> None:
        self._watching = True
        self._confirmed_at = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="policy-watcher", daemon=True)
        self._thread.start()
        if self._notices is not None:
            self._notices.start(self.wake)

    def stop_watching(self) -> None:
        self._watching = False
        self._stop.set()
        self._wake.set()
        if self._notices is not None:
            self._notices.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.origin.close()

    def _watch(self) -> None:
        while True:
            self._wake.wait(self._interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                self.reload_if_changed()
            except Exception:  # a watcher that dies silently would freeze the policy
                log.exception("policy.watch_failed")
            # A flood of notices costs at most one cheap check per gap.
            self._stop.wait(_MIN_CHECK_GAP_S)

    # -- decisions ------------------------------------------------------------------------
    @property
    def loaded(self) -> LoadedPolicy | None:
        return self._current

    @property
    def version(self) -> str | None:
        return self._current.source.version if self._current else None

    @property
    def fresh(self) -> bool:
        """Whether the loaded policy may decide: confirmed against its origin recently enough.

        Only a watching engine (the server's) ages; a one-shot engine (CLI) is fresh.
        """
        if self._current is None:
            return False
        return not self._watching or time.monotonic() - self._confirmed_at <= self._stale_after

    def state(self) -> dict[str, object]:
        """What readiness may show anyone: no error text, no rules."""
        return {
            "source": self.origin.kind,
            "loaded": self._current is not None,
            "version": self.version,
            "fresh": self.fresh,
            "rejected_edit": self.last_error is not None,
        }

    def _usable(self) -> LoadedPolicy:
        current = self._current
        if current is None or not self.fresh:
            raise PolicyUnavailableError()
        return current

    @staticmethod
    def effective_role(role: str, operator: bool) -> str:
        """The key's role as the enforcer sees it: a global role outside an operator tenant
        is no role at all (defence in depth: such keys are refused at creation too)."""
        return "" if role in GLOBAL_ROLES and not operator else role

    def roles_for(self, principal: Principal) -> tuple[str, ...]:
        """Exactly the roles the enforcer matches for ``principal``: its key's role (when
        usable in its tenant) and the roles grouping lines grant its subject there."""
        current = self._usable()
        roles = []
        key_role = self.effective_role(principal.role, principal.operator)
        if key_role:
            roles.append(key_role)
        with self._lock:
            granted = current.enforcer.get_roles_for_user_in_domain(
                SUBJECT_PREFIX + principal.subject, principal.tenant
            )
        for role in granted:
            role = self.effective_role(role, principal.operator)
            if role and role not in roles:
                roles.append(role)
        return tuple(roles)

    def decide(self, principal: Principal, obj: str, act: str) -> Decision:
        return self.decide_for(
            principal.subject,
            principal.role,
            principal.tenant,
            principal.trust,
            obj,
            act,
            operator=principal.operator,
        )

    def decide_for(
        self,
        subject: str,
        role: str,
        tenant: str,
        trust: str,
        obj: str,
        act: str,
        *,
        operator: bool = False,
    ) -> Decision:
        """Allow or deny, with the deciding rule.

        Raises:
            PolicyUnavailableError: no policy loaded, or the loaded one is stale (→ 503).
        """
        current = self._usable()
        key = (subject, role, tenant, trust, obj, act, operator)
        with self._lock:
            if self._current is not current:  # swapped while we waited: decide on the new one
                current = self._usable()
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            request = (
                SUBJECT_PREFIX + subject,
                self.effective_role(role, operator),
                tenant,
                f"trust:{trust}",
                OPERATOR_DOMAIN if operator else CUSTOMER_DOMAIN,
                obj,
                act,
            )
            try:
                allowed, explain = current.enforcer.enforce_ex(*request)
                if allowed:
                    _, explain = current.allow_explainer.enforce_ex(*request)
            except Exception as exc:  # noqa: BLE001 - any enforcer fault is a denial
                log.error("policy.enforce_failed", error=type(exc).__name__)
                return Decision(
                    allowed=False, rule=None, policy_version=current.source.version, error=True
                )
            rule = tuple(explain) if explain else None
            decision = Decision(
                allowed=bool(allowed), rule=rule, policy_version=current.source.version
            )
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = decision
            return decision
