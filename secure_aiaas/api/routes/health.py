"""Liveness and readiness probes: unauthenticated, unaudited, and free of tenant data."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from secure_aiaas.api.bodies import BoundedRoute

router = APIRouter(tags=["health"], route_class=BoundedRoute)


@router.get("/v2/health/live", openapi_extra={"security": []})
async def live() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


@router.get("/v2/health/ready", openapi_extra={"security": []})
async def ready(request: Request) -> JSONResponse:
    """Ready only with a fresh policy, a writable audit store and a reachable identity store.

    Anyone may ask, so it shows states, never error texts (those are in the logs and, for
    security admins, at ``GET /v1/admin/policy``).
    """
    pipeline = request.app.state.pipeline
    policy = pipeline.policy.state()
    checks: dict[str, Any] = {
        "policy": policy,
        "audit_store": (
            not pipeline.audit.failing and await anyio.to_thread.run_sync(pipeline.audit.store.ping)
        ),
        "identity_store": await anyio.to_thread.run_sync(pipeline.registry.ping),
    }
    checks.update(pipeline.capabilities.readiness())
    is_ready = (
        policy["loaded"]
        and policy["fresh"]
        and checks["audit_store"]
        and checks["identity_store"]
        and all(
            v for k, v in checks.items() if k not in ("policy", "audit_store", "identity_store")
        )
    )
    return JSONResponse(
        {"ready": bool(is_ready), "checks": checks}, status_code=200 if is_ready else 503
    )
