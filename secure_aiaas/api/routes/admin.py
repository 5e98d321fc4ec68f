"""Security administration: the live policy (security-admin only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import PipelineDep, authorize
from secure_aiaas.errors import PolicyUnavailableError
from secure_aiaas.schemas import PolicyView
from secure_aiaas.types import Principal

router = APIRouter(tags=["admin"], route_class=BoundedRoute)


@router.get("/v1/admin/policy", response_model=PolicyView)
async def current_policy(
    _principal: Annotated[Principal, authorize("admin:policy", "read")], pipeline: PipelineDep
) -> dict[str, Any]:
    """The live policy: version, source files, rules with their origin, last rejected edit."""
    loaded = pipeline.policy.loaded
    if loaded is None:
        raise PolicyUnavailableError()
    return {
        "version": loaded.source.version,
        "files": list(loaded.source.files),
        "rules": [{"type": line.ptype, "fields": list(line.fields), "source": line.source}
                  for line in loaded.source.lines],
        "last_error": pipeline.policy.last_error,
    }
