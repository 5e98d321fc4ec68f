"""Personal-data scrubbing as a service, and the tenant's restore key.

`POST /v1/privacy/scrub` returns the scrubbed text and what was found (type, offsets in the
input, score), never the values. The audit record carries entity type counts only.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import Authorized, authorize
from secure_aiaas.errors import InputError
from secure_aiaas.schemas import RestoreKey, ScrubRequest, ScrubResponse

router = APIRouter(tags=["privacy"], route_class=BoundedRoute)


@router.post(
    "/v1/privacy/scrub",
    response_model=ScrubResponse,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
async def scrub(
    body: ScrubRequest, auth: Annotated[Authorized, authorize("privacy:scrub", "infer")]
) -> dict[str, Any]:
    """Scrub `text`, `texts` or a `json` value with the tenant's privacy profile."""
    pipeline, principal = auth.pipeline, auth.principal
    if "json_value" in body.model_fields_set:
        value, counts, facts = await pipeline.scrub_json(
            principal, body.json_value, auth.facts, model=body.model
        )
        return auth.hand_back(facts, {"json": value, "entity_counts": counts})
    texts = [body.text] if body.text is not None else list(body.texts or [])
    results, facts = await pipeline.scrub(principal, texts, auth.facts, model=body.model)
    found: dict[str, int] = dict(facts.details.get("pii", {}))  # type: ignore[call-overload]
    return auth.hand_back(
        facts, {"results": [r.to_dict() for r in results], "entity_counts": found}
    )


@router.get("/v1/privacy/restore-key", response_model=RestoreKey)
async def restore_key(
    auth: Annotated[Authorized, authorize("privacy:restore-key", "read")],
) -> dict[str, str]:
    """The tenant's key for undoing the `encrypt` operator (tenant admins only)."""
    keys_of = auth.pipeline.privacy_keys
    keys = keys_of(auth.principal.tenant) if keys_of else None
    if keys is None or keys.encryption_key is None:
        raise InputError("no restore key configured")
    return auth.hand_back(
        auth.facts,
        {
            "tenant": auth.principal.tenant,
            "algorithm": "AES-256-GCM",
            "key": base64.b64encode(keys.encryption_key).decode(),
        },
    )
