"""Who am I, and the API schema (both for any authenticated caller)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import Authorized, authorize
from secure_aiaas.schemas import WhoAmI

router = APIRouter(tags=["identity"], route_class=BoundedRoute)
Identity = Annotated[Authorized, authorize("identity", "read")]


@router.get("/v1/whoami", response_model=WhoAmI)
async def whoami(auth: Identity) -> dict[str, Any]:
    """The caller's tenant, subject and roles (exactly those the policy uses)."""
    p = auth.principal
    body = {
        "tenant": p.tenant,
        "trust": p.trust,
        "subject": p.subject,
        "roles": list(auth.pipeline.policy.roles_for(p)),
        "key_id": p.key_id,
        "operator": p.operator,
    }
    return auth.hand_back(auth.facts, body)


@router.get("/v1/openapi.json", include_in_schema=False)
async def openapi_schema(request: Request, auth: Identity) -> dict[str, Any]:
    """The OpenAPI description of this service (also public at /openapi.json)."""
    schema: dict[str, Any] = request.app.openapi()
    return auth.hand_back(auth.facts, schema)
