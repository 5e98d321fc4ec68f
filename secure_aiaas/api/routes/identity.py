"""Who am I, and the API schema (both for any authenticated caller)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import PipelineDep, authorize
from secure_aiaas.schemas import WhoAmI
from secure_aiaas.types import Principal

router = APIRouter(tags=["identity"], route_class=BoundedRoute)


@router.get("/v1/whoami", response_model=WhoAmI)
async def whoami(
    principal: Annotated[Principal, authorize("identity", "read")], pipeline: PipelineDep
) -> dict[str, Any]:
    """The caller's tenant, subject and roles."""
    return {"tenant": principal.tenant, "trust": principal.trust, "subject": principal.subject,
            "roles": list(pipeline.policy.roles_for(principal)), "key_id": principal.key_id,
            "operator": principal.operator}


@router.get("/v1/openapi.json", include_in_schema=False)
async def openapi_schema(
    request: Request, _principal: Annotated[Principal, authorize("identity", "read")]
) -> dict[str, Any]:
    """The OpenAPI description of this service."""
    schema: dict[str, Any] = request.app.openapi()
    return schema


