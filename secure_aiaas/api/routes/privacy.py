"""Personal-data scrubbing as a service, and the tenant's restore key.

`POST /v1/privacy/scrub` returns the scrubbed text and what was found (type, offsets in the
input, score), never the values. The audit record carries entity type counts only.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Request

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import AuditDep, PipelineDep, authorize
from secure_aiaas.errors import InputError
from secure_aiaas.schemas import RestoreKey, ScrubRequest, ScrubResponse
from secure_aiaas.types import Principal

router = APIRouter(tags=["privacy"], route_class=BoundedRoute)


def record_pii(audit: Any, counts: Counter[str] | dict[str, int]) -> None:
    """Entity type counts (never values) into the request's audit record."""
    merged = Counter(audit.details.get("pii", {}))
    merged.update(counts)
    if merged:
        audit.details["pii"] = dict(sorted(merged.items()))


def pii_counts(results: list[Any]) -> Counter[str]:
    total: Counter[str] = Counter()
    for result in results:
        total.update(result.entity_counts())
    return total


@router.post("/v1/privacy/scrub", response_model=ScrubResponse, response_model_exclude_unset=True,
             response_model_by_alias=True)
async def scrub(body: ScrubRequest, request: Request,
                principal: Annotated[Principal, authorize("privacy:scrub", "infer")],
                pipeline: PipelineDep, audit: AuditDep) -> dict[str, Any]:
    """Scrub `text`, `texts` or a `json` value with the tenant's privacy profile."""
    if "json_value" in body.model_fields_set:
        value, counts = await pipeline.scrub_json(principal, body.json_value, model=body.model)
        record_pii(audit, counts)
        return {"json": value, "entity_counts": counts}
    texts = [body.text] if body.text is not None else list(body.texts or [])
    results = await pipeline.scrub(principal, texts, model=body.model)
    total = pii_counts(results)
    record_pii(audit, total)
    return {"results": [r.to_dict() for r in results], "entity_counts": dict(total)}


@router.get("/v1/privacy/restore-key", response_model=RestoreKey)
async def restore_key(principal: Annotated[Principal, authorize("privacy:restore-key", "read")],
                      pipeline: PipelineDep) -> dict[str, str]:
    """The tenant's key for undoing the `encrypt` operator (tenant admins only)."""
    keys = pipeline.privacy_keys(principal.tenant) if pipeline.privacy_keys else None
    if keys is None or keys.encryption_key is None:
        raise InputError("no restore key configured")
    return {"tenant": principal.tenant, "algorithm": "AES-256-GCM",
            "key": base64.b64encode(keys.encryption_key).decode()}
