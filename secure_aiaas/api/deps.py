"""FastAPI dependencies: authentication and authorization for every non-health route.

`authorize(obj, act)` is the one gate: a route that does not depend on it is caught by the
route-table test. ``obj`` may name path parameters: ``authorize("model:{name}", "infer")``.

The trail holds only identifiers the service vouches for: a model name in an object is
recorded only once it is known to exist (``model:<name>``); anything else is recorded as a
fixed marker plus a short keyed hash (``model:~unknown-<hash>``) and answered 404 before the
policy is asked. An attacker's path segment never reaches the immutable trail verbatim.
"""

from __future__ import annotations

import string
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from secure_aiaas.api.middleware import AuditContext
from secure_aiaas.errors import AuthenticationError, AuthorizationError, InputError, NotFoundError
from secure_aiaas.pipeline import Pipeline
from secure_aiaas.scheduling import QuotaExceededError
from secure_aiaas.types import Principal


def get_pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def audit_context(request: Request) -> AuditContext:
    ctx: AuditContext = request.scope["state"]["audit"]
    return ctx


async def write_ahead(request: Request) -> None:
    """Commit the request's *attempt* record before its side effect (AuditError → 503).

    Every route with a side effect calls this immediately before it; if the record cannot be
    committed the side effect never happens. The outcome record follows as for any request.
    """
    commit: Callable[[], Awaitable[None]] = request.scope["state"]["write_ahead"]
    await commit()


def principal_of(request: Request) -> Principal:
    """The caller, authenticated by the middleware before routing."""
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise AuthenticationError()  # never reached through the middleware
    return principal


async def _gate(request: Request, obj_of: Any, act: str, template: str) -> Principal:
    pipeline = get_pipeline(request)
    ctx = audit_context(request)
    ctx.action = act
    principal = principal_of(request)
    try:
        ctx.object = await obj_of(request)
    except NotFoundError:
        ctx.object = pipeline.unvouched(template.split(":", 1)[0], _raw_value(request))
        raise
    decision = pipeline.authorize(principal, ctx.object, act)
    ctx.decision = decision
    if not decision.allowed:
        raise AuthorizationError()
    # Quotas after the policy (a denied call costs no quota), before the handler runs; the
    # middleware releases the concurrency slot once the response is sent.
    try:
        ctx.admission = await pipeline.admit(principal)
    except QuotaExceededError as exc:
        ctx.details["quota"] = exc.limit  # which limit refused: audited and counted
        raise
    return principal


def _vouched(pipeline: Pipeline, template: str, values: dict[str, Any]) -> str:
    """``template`` filled with ``values`` once each is a known identifier; NotFoundError
    (recorded with the marker instead) for anything the service does not know."""
    kind = template.split(":", 1)[0]
    for value in values.values():
        if not (isinstance(value, str) and pipeline.knows(kind, value)):
            raise NotFoundError(f"unknown {kind}")
    return template.format(**values)


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def authorize(obj: str, act: str) -> Any:
    """A dependency that authenticates the caller and enforces (obj, act) for it."""
    names = _placeholders(obj)

    async def object_from_path(request: Request) -> str:
        if not names:
            return obj
        values = {name: request.path_params.get(name) for name in names}
        return _vouched(get_pipeline(request), obj, values)

    async def dependency(request: Request) -> Principal:
        return await _gate(request, object_from_path, act, obj)

    dependency.__authorization__ = (obj, act)  # type: ignore[attr-defined]
    return Depends(dependency)


def _raw_value(request: Request) -> str:
    """What the caller named (for the keyed hash only; never recorded as such)."""
    named = request.scope.get("state", {}).get("named_object")
    if isinstance(named, str):
        return named
    return "/".join(str(v) for v in request.path_params.values())


def authorize_body(obj: str, field: str, act: str) -> Any:
    """Like `authorize`, for routes naming their object in a JSON body field.

    ``authorize_body("model:{}", "model", "infer")`` reads ``body["model"]`` (after the caller
    is authenticated: an anonymous caller's body is never parsed).
    """

    async def object_from_body(request: Request) -> str:
        try:
            body = await request.json()
        except ValueError:
            raise InputError("body: not valid JSON") from None
        value = body.get(field) if isinstance(body, dict) else None
        if not isinstance(value, str):
            raise InputError(f"{field}: expected a model name")
        request.scope["state"]["named_object"] = value
        return _vouched(get_pipeline(request), obj.replace("{}", "{value}"), {"value": value})

    async def dependency(request: Request) -> Principal:
        return await _gate(request, object_from_body, act, obj)

    dependency.__authorization__ = (obj, act)  # type: ignore[attr-defined]
    return Depends(dependency)


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
AuditDep = Annotated[AuditContext, Depends(audit_context)]
WriteAhead = Callable[[], Awaitable[None]]
