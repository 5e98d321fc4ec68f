"""FastAPI dependencies: authentication and authorization for every non-health route.

`authorize(obj, act)` is the one gate: a route that does not depend on it is caught by the
route-table test. ``obj`` may name path parameters: ``authorize("model:{name}", "infer")``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from secure_aiaas.api.middleware import AuditContext
from secure_aiaas.errors import AuthenticationError, AuthorizationError
from secure_aiaas.pipeline import Pipeline
from secure_aiaas.types import Principal


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


def authorize(obj: str, act: str) -> Any:
    """A dependency that authenticates the caller and enforces (obj, act) for it."""

    async def dependency(request: Request) -> Principal:
        pipeline = get_pipeline(request)
        ctx = audit_context(request)
        ctx.object = obj.format(**request.path_params)
        ctx.action = act
        principal = await pipeline.authenticate(bearer_token(request))
        ctx.principal = principal
        decision = pipeline.authorize(principal, ctx.object, act)
        ctx.decision = decision
        if not decision.allowed:
            raise AuthorizationError()
        return principal

    dependency.__authorization__ = (obj, act)  # type: ignore[attr-defined]
    return Depends(dependency)


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
AuditDep = Annotated[AuditContext, Depends(audit_context)]
