"""The auditor API: search the trail, download signed exports, fetch the public key.

Scope comes from the policy, not from the request: every route passes the
``authorize("audit:own", "read")`` gate (an auditor's own tenant), and asking for another
tenant (``audit:tenant:<T>``) or for every tenant (``audit:all``) is a second policy decision
that replaces the first in the request's audit record. A refused cross-tenant request gets
403 and nothing else, and is recorded as a denial naming the tenant it asked for.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import Authorized, authorize
from secure_aiaas.audit import utc_now
from secure_aiaas.audit.export import ExportRequest as ExportRange
from secure_aiaas.audit.export import archive, export_range
from secure_aiaas.audit.query import EventFilter, query_events
from secure_aiaas.crypto.keystore import public_key_pem
from secure_aiaas.errors import AuthorizationError
from secure_aiaas.schemas import AuditEventsPage, ExportRequest, PublicKeys
from secure_aiaas.types import AuditFacts

router = APIRouter(tags=["audit"], route_class=BoundedRoute)
Gate = Annotated[Authorized, authorize("audit:own", "read")]


async def _scope(auth: Authorized, tenant: str | None) -> tuple[str | None, AuditFacts]:
    """The tenant the caller may read (None: every tenant), as the policy decides, and the
    facts naming what was asked. A tenant that does not exist is recorded as a marker."""
    pipeline, principal = auth.pipeline, auth.principal
    if tenant == principal.tenant:
        return tenant, auth.facts
    if tenant is None:
        obj = "audit:all"
    elif await anyio.to_thread.run_sync(pipeline.tenant_exists, tenant):
        obj = f"audit:tenant:{tenant}"
    else:
        obj = pipeline.unvouched("audit:tenant", tenant)
    decision = pipeline.authorize(principal, obj, "read")
    if tenant is None and not decision.allowed:
        return principal.tenant, auth.facts  # no tenant asked for: one's own, as allowed
    facts = auth.facts.decided(obj, "read", decision)
    if not decision.allowed:
        raise AuthorizationError().with_facts(facts)
    return tenant, facts


@router.get("/v1/audit/events", response_model=AuditEventsPage)
async def list_events(
    auth: Gate,
    tenant: str | None = None,
    subject: str | None = None,
    action: str | None = None,
    decision: Literal["allow", "deny", "unauthenticated", "error", "attempt"] | None = None,
    model: str | None = None,
    status: int | None = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Audit records matching the filters, oldest first, one page per call."""
    scope, facts = await _scope(auth, tenant)
    flt = EventFilter(
        tenant=scope,
        subject=subject,
        action=action,
        decision=decision,
        model=model,
        status=status,
        since=since,
        until=until,
    )
    store = auth.pipeline.audit.store
    records, next_cursor = await anyio.to_thread.run_sync(
        lambda: query_events(store, flt, cursor=cursor, limit=limit)
    )
    return auth.hand_back(
        facts.detail(returned=len(records)),
        {"tenant": scope, "records": records, "next_cursor": next_cursor},
    )


@router.post(
    "/v1/audit/exports",
    response_class=FileResponse,
    responses={
        200: {
            "description": "A .tar.gz archive: records, manifest, signature.",
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def create_export(body: ExportRequest, auth: Gate) -> FileResponse:
    """A signed export of a range (records + manifest + signature) as a .tar.gz archive."""
    scope, facts = await _scope(auth, body.tenant)
    await auth.write_ahead(facts)  # durable before anything leaves the service
    workdir = Path(tempfile.mkdtemp(prefix="saiaas-export-"))
    writer = auth.pipeline.audit
    wanted = ExportRange(since=body.since, until=body.until, tenant=scope, fmt=body.format)

    def build() -> tuple[Path, dict[str, Any]]:
        manifest = export_range(
            writer.store,
            workdir / "export",
            wanted,
            signing_key=writer.signing_key,
            key_id=writer.key_id,
            created_at=utc_now(),
        )
        return archive(workdir / "export", workdir / "audit-export.tar.gz"), manifest

    try:
        path, manifest = await anyio.to_thread.run_sync(build)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    # The export is itself audited: what range left the service, and which manifest.
    facts = facts.detail(
        export={
            "tenant": scope,
            "count": manifest["count"],
            "first_seq": manifest["first_seq"],
            "last_seq": manifest["last_seq"],
            "manifest_sha256": manifest["manifest_sha256"],
        }
    )
    return auth.hand_back(
        facts,
        FileResponse(
            path,
            media_type="application/gzip",
            filename="audit-export.tar.gz",
            headers={"X-Manifest-SHA256": manifest["manifest_sha256"]},
            background=BackgroundTask(shutil.rmtree, workdir, True),
        ),
    )


@router.get("/v1/audit/public-key", response_model=PublicKeys)
async def public_key(
    auth: Annotated[Authorized, authorize("audit:public-key", "read")],
) -> dict[str, Any]:
    """The audit signing key's public half (and retired ones), for offline verification."""
    writer = auth.pipeline.audit
    keys = writer.public_keys()
    pems = {key_id: public_key_pem(key).decode() for key_id, key in sorted(keys.items())}
    entries = [
        {"key_id": key_id, "current": key_id == writer.key_id, "pem": pem}
        for key_id, pem in pems.items()
    ]
    return auth.hand_back(
        auth.facts,
        {
            "algorithm": "Ed25519",
            "current_key_id": writer.key_id,
            "keys": entries,
            "pem_bundle": "".join(pems.values()),
        },
    )
