"""Liveness and readiness probes: unauthenticated, unaudited, and free of tenant data."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/v2/health/live")
async def live() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request) -> JSONResponse:
    """Ready only with a policy loaded and the audit and identity stores reachable."""
    pipeline = request.app.state.pipeline
    checks: dict[str, Any] = {
        "policy": {"loaded": pipeline.policy.version is not None,
                   "version": pipeline.policy.version,
                   "error": pipeline.policy.last_error},
        "audit_store": await anyio.to_thread.run_sync(pipeline.audit.store.ping),
        "identity_store": await anyio.to_thread.run_sync(pipeline.registry.ping),
    }
    for name, probe in request.app.state.readiness_probes.items():
        checks[name] = probe()
    is_ready = (checks["policy"]["loaded"] and checks["audit_store"]
                and checks["identity_store"]
                and all(v for k, v in checks.items()
                        if k not in ("policy", "audit_store", "identity_store")))
    return JSONResponse({"ready": bool(is_ready), "checks": checks},
                        status_code=200 if is_ready else 503)
