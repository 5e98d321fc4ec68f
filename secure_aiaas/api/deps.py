"""FastAPI dependencies: authentication and authorization for every non-health route.

`authorize(obj, act)` is the one gate: a route that does not depend on it is caught by the
route-table test. ``obj`` may name path parameters: ``authorize("model:{name}", "infer")``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Request

from secure_aiaas.api.middleware import AuditContext
from secure_aiaas.errors import AuthenticationError, AuthorizationError, InputError
from secure_aiaas.pipeline import Pipeline
from secure_aiaas.scheduling import QuotaExceededError
from secure_aiaas.types import Principal

_OBJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def get_pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def audit_context(request: Request) -> AuditContext:
    ctx: AuditContext = request.scope["state"]["audit"]
    return ctx


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationError()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError()
    return token.strip()


async def _gate(request: Request, obj_of: Any, act: str) -> Principal:
    pipeline = get_pipeline(request)
    ctx = audit_context(request)
    ctx.action = act
    principal = await pipeline.authenticate(bearer_token(request))
    ctx.principal = principal
    ctx.object = await obj_of(request)
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


def authorize(obj: str, act: str) -> Any:
    """A dependency that authenticates the caller and enforces (obj, act) for it."""

    async def object_from_path(request: Request) -> str:
        return obj.format(**request.path_params)

    async def dependency(request: Request) -> Principal:
        return await _gate(request, object_from_path, act)

    dependency.__authorization__ = (obj, act)  # type: ignore[attr-defined]
    return Depends(dependency)


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
        if not isinstance(value, str) or not _OBJECT_NAME.match(value):
            raise InputError(f"{field}: expected a model name")
        return obj.format(value)

    async def dependency(request: Request) -> Principal:
        return await _gate(request, object_from_body, act)

    dependency.__authorization__ = (obj, act)  # type: ignore[attr-defined]
    return Depends(dependency)


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
AuditDep = Annotated[AuditContext, Depends(audit_context)]
