"""Security administration: the live policy (security-admin only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import Authorized, authorize
from secure_aiaas.errors import PolicyUnavailableError
from secure_aiaas.schemas import PolicyView

router = APIRouter(tags=["admin"], route_class=BoundedRoute)


@router.get("/v1/admin/policy", response_model=PolicyView)
async def current_policy(
    auth: Annotated[Authorized, authorize("admin:policy", "read")],
) -> dict[str, Any]:
    """The live policy: version, source files, rules with their origin, last rejected edit."""
    policy = auth.pipeline.policy
    loaded = policy.loaded
    if loaded is None:
        raise PolicyUnavailableError()
    return auth.hand_back(
        auth.facts,
        {
            "version": loaded.source.version,
            "files": list(loaded.source.files),
            "rules": [
                {"type": line.ptype, "fields": list(line.fields), "source": line.source}
                for line in loaded.source.lines
            ],
            "last_error": policy.last_error,
        },
    )
