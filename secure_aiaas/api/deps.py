"""FastAPI dependencies: authorization for every non-health route, and the hand-back.

`authorize(obj, act)` is the one gate: a route that does not depend on it is caught by the
route-table test. ``obj`` may name path parameters: ``authorize("model:{name}", "infer")``.
It returns an `Authorized` value: the caller, the pipeline, and the request's audit facts
so far (an immutable `AuditFacts`: principal, object, action, decision). The route passes
those facts through the pipeline's steps, each returning new facts, and ends with
``return auth.hand_back(facts, body)``: the one place the facts reach the audit record.

The trail holds only identifiers the service vouches for: a model name in an object is
recorded only once it is known to exist (``model:<name>``); anything else is recorded as a
fixed marker plus a short keyed hash (``model:~unknown-<hash>``) and answered 404 before the
policy is asked. An attacker's path segment never reaches the immutable trail verbatim.
"""

from __future__ import annotations

import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from secure_aiaas.errors import AuthenticationError, AuthorizationError, InputError, NotFoundError
from secure_aiaas.pipeline import Pipeline
from secure_aiaas.scheduling import QuotaExceededError
from secure_aiaas.types import AuditFacts, Principal

T = TypeVar("T")


@dataclass(frozen=True)
class Authorized:
    """What the gate established: who calls, what may be done, and the audit facts so far."""

    principal: Principal
    facts: AuditFacts
    pipeline: Pipeline
    _state: dict[str, Any]

    def hand_back(self, facts: AuditFacts, body: T) -> T:
        """Return ``body`` as the route's answer, with ``facts`` for its audit record."""
        self._state["facts"] = facts
        return body

    def stream_back(self, facts: AuditFacts, response: T) -> T:
        """Return a streamed answer whose outcome is recorded when it ends, not when it
        starts (`record_outcome` before its last event; 499 if the client went away)."""
        self._state["facts"] = facts
        self._state["deferred"] = True
        return response

    def note(self, facts: AuditFacts) -> None:
        """The latest facts of a streamed answer (recorded if it ends without an outcome)."""
        self._state["facts"] = facts

    async def record_outcome(self, facts: AuditFacts) -> None:
        """Durably record a streamed answer's outcome now (AuditError if it cannot be)."""
        commit: Callable[[AuditFacts], Awaitable[None]] = self._state["record_outcome"]
        await commit(facts)

    async def write_ahead(self, facts: AuditFacts) -> None:
        """Commit the *attempt* record of a side effect before it happens (AuditError → 503:
        the side effect must then not happen). Every route with a side effect calls this
        immediately before it; the outcome record follows as for any request."""
        commit: Callable[[AuditFacts], Awaitable[None]] = self._state["write_ahead"]
        await commit(facts)


async def get_pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def _principal(request: Request) -> Principal:
    """The caller, authenticated by the middleware before routing."""
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise AuthenticationError()  # never reached through the middleware
    return principal


def _kind(template: str) -> str:
    return template.split(":", 1)[0]


def _vouched(pipeline: Pipeline, template: str, values: dict[str, Any]) -> str | None:
    """``template`` filled with ``values`` once each is a known identifier, else None."""
    kind = _kind(template)
    for value in values.values():
        if not (isinstance(value, str) and pipeline.knows(kind, value)):
            return None
    return template.format(**values)


async def _gate(
    request: Request, template: str, act: str, values: dict[str, Any] | None
) -> Authorized:
    pipeline: Pipeline = request.app.state.pipeline
    state = request.scope["state"]
    principal = _principal(request)
    base: AuditFacts = state.get("facts") or AuditFacts(principal=principal)
    obj = template if values is None else _vouched(pipeline, template, values)
    if obj is None:
        named = "/".join(str(v) for v in values.values()) if values else ""
        state["facts"] = base.decided(pipeline.unvouched(_kind(template), named), act, None)
        raise NotFoundError(f"unknown {_kind(template)}")
    decision = pipeline.authorize(principal, obj, act)
    facts = base.decided(obj, act, decision)
    state["facts"] = facts
    if not decision.allowed:
        raise AuthorizationError()
    # Quotas after the policy (a denied call costs no quota), before the handler runs; the
    # middleware releases the concurrency slot once the response is sent.
    try:
        state["admission"] = await pipeline.admit(principal)
    except QuotaExceededError as exc:
        state["facts"] = facts.detail(quota=exc.limit)  # which limit refused: audited, counted
        raise
    return Authorized(principal=principal, facts=facts, pipeline=pipeline, _state=state)


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def authorize(obj: str, act: str) -> Any:
    """A dependency that enforces (obj, act) for the authenticated caller → `Authorized`."""
    names = _placeholders(obj)

    async def dependency(request: Request) -> Authorized:
        values = {name: request.path_params.get(name) for name in names} if names else None
        return await _gate(request, obj, act, values)

    dependency.__authorization__ = (obj, act)  # type: ignore[attr-defined]
    return Depends(dependency)


def authorize_body(obj: str, field: str, act: str) -> Any:
    """Like `authorize`, for routes naming their object in a JSON body field.

    ``authorize_body("model:{}", "model", "infer")`` reads ``body["model"]`` (the body was
    parsed under bounds by `BoundedRoute`, after the middleware authenticated the caller: an
    anonymous caller's body is never read).
    """
    template = obj.replace("{}", "{value}")

    async def dependency(request: Request) -> Authorized:
        try:
            body = await request.json()
        except ValueError:
            raise InputError("body: not valid JSON") from None
        value = body.get(field) if isinstance(body, dict) else None
        if not isinstance(value, str):
            raise InputError(f"{field}: expected a model name")
        return await _gate(request, template, act, {"value": value})

    dependency.__authorization__ = (obj, act)  # type: ignore[attr-defined]
    return Depends(dependency)


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
