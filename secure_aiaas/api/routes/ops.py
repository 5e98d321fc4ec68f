"""Operators' views: Prometheus metrics and the resource view (both role-gated and audited)."""

from __future__ import annotations

import os
import resource
import sys
from typing import Annotated, Any

import anyio
from fastapi import APIRouter
from fastapi.responses import Response

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import Authorized, authorize
from secure_aiaas.errors import NotFoundError
from secure_aiaas.metrics import CONTENT_TYPE
from secure_aiaas.pipeline import Pipeline

router = APIRouter(tags=["operations"], route_class=BoundedRoute)


def sample_metrics(pipeline: Pipeline) -> None:
    """Refresh the scrape-time gauges from live queues and pools."""
    if pipeline.metrics is None:
        return
    pipeline.metrics.sample(
        batchers=pipeline.models.stats() if pipeline.models is not None else [],
        he=pipeline.he.stats() if pipeline.he is not None else None,
        audit_last_commit_ms=pipeline.audit.last_commit_ms,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(auth: Annotated[Authorized, authorize("metrics", "read")]) -> Response:
    """Prometheus metrics (text exposition format)."""
    pipeline = auth.pipeline
    if pipeline.metrics is None:
        raise NotFoundError("metrics are disabled")
    sample_metrics(pipeline)
    return auth.hand_back(auth.facts, Response(pipeline.metrics.render(), media_type=CONTENT_TYPE))


def _memory() -> dict[str, int | None]:
    """This process's resident memory and the machine's (Linux; None where unknown)."""
    rss = None
    try:
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
        1 if sys.platform == "darwin" else 1024
    )
    total: int | None
    available: int | None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (OSError, ValueError):
        total = available = None
    return {
        "process_rss_bytes": rss,
        "process_peak_rss_bytes": peak,
        "system_total_bytes": total,
        "system_available_bytes": available,
    }


@router.get("/v1/admin/resources")
async def resources(
    auth: Annotated[Authorized, authorize("admin:resources", "read")],
) -> dict[str, Any]:
    """Devices, memory, loaded models, queue depths and pool sizes of this replica."""
    pipeline = auth.pipeline
    models = (
        await anyio.to_thread.run_sync(pipeline.models.resources)
        if pipeline.models is not None
        else None
    )
    quotas = pipeline.quotas
    ping = getattr(quotas, "ping", None)
    return auth.hand_back(
        auth.facts,
        {
            "pid": os.getpid(),
            "cpu": {
                "count": os.cpu_count(),
                "usable": len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else os.cpu_count(),
                "load_average": list(os.getloadavg()),
            },
            "memory": _memory(),
            "plaintext": models,
            "he": pipeline.he.stats() if pipeline.he is not None else None,
            "quotas": {
                "backend": quotas.backend if quotas is not None else None,
                "reachable": (await ping()) if ping is not None else quotas is not None,
            },
            "audit": {"last_commit_ms": pipeline.audit.last_commit_ms},
        },
    )
