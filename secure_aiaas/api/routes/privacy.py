"""Personal-data scrubbing as a service, and the tenant's restore key.

`POST /v1/privacy/scrub` returns the scrubbed text and what was found (type, offsets in the
input, score), never the values. The audit record carries entity type counts only.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Request

from secure_aiaas.api.deps import AuditDep, PipelineDep, authorize
from secure_aiaas.errors import InputError
from secure_aiaas.types import Principal

router = APIRouter(tags=["privacy"])
MAX_TEXTS = 1024


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


@router.post("/v1/privacy/scrub")
async def scrub(request: Request,
                principal: Annotated[Principal, authorize("privacy:scrub", "infer")],
                pipeline: PipelineDep, audit: AuditDep) -> dict[str, Any]:
    """Scrub `text`, `texts` or a `json` value with the tenant's privacy profile."""
    try:
        body = await request.json()
    except ValueError:
        raise InputError("body: not valid JSON") from None
    if not isinstance(body, dict):
        raise InputError("body: expected an object with 'text', 'texts' or 'json'")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InputError("model: expected a string")
    if "json" in body:
        value, counts = await pipeline.scrub_json(principal, body["json"], model=model)
        record_pii(audit, counts)
        return {"json": value, "entity_counts": counts}
    texts = body.get("texts", [body["text"]] if "text" in body else None)
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InputError("texts: expected a non-empty list of strings (or 'text': a string)")
    if len(texts) > MAX_TEXTS:
        raise InputError(f"texts: at most {MAX_TEXTS} per request")
    results = await pipeline.scrub(principal, texts, model=model)
    total = pii_counts(results)
    record_pii(audit, total)
    return {"results": [r.to_dict() for r in results], "entity_counts": dict(total)}


@router.get("/v1/privacy/restore-key")
async def restore_key(principal: Annotated[Principal, authorize("privacy:restore-key", "read")],
                      pipeline: PipelineDep) -> dict[str, str]:
    """The tenant's key for undoing the `encrypt` operator (tenant admins only)."""
    keys = pipeline.privacy_keys(principal.tenant) if pipeline.privacy_keys else None
    if keys is None or keys.encryption_key is None:
        raise InputError("no restore key configured")
    return {"tenant": principal.tenant, "algorithm": "AES-256-GCM",
            "key": base64.b64encode(keys.encryption_key).decode()}
