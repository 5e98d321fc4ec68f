"""Encrypted inference (TenSEAL/CKKS): plans, public contexts, ciphertext evaluation.

The server never holds a secret key and never sees plaintext. Bodies are binary
(`application/vnd.saiaas.he+octet-stream`), capped per model before they are read; audit
records carry the model, the context id and the SHA-256 of the ciphertexts, never their bytes.
No route accepts decrypted results back from a client (that is how CKKS key-recovery attacks
start).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import Authorized, authorize
from secure_aiaas.crypto.he_wire import CONTENT_TYPE
from secure_aiaas.errors import (
    AuthorizationError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
)
from secure_aiaas.he import TenantLimitError, request_cap
from secure_aiaas.pipeline import Pipeline
from secure_aiaas.schemas import HE_CONTENT_TYPE, ContextCreated, binary_body
from secure_aiaas.types import AuditFacts, Decision, Principal

router = APIRouter(tags=["encrypted inference (CKKS)"], route_class=BoundedRoute)
_FRAME = {
    "200": {
        "description": "The encrypted result frame.",
        "content": {HE_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


def owner_of(principal: Principal) -> str:
    """Contexts belong to one subject in one tenant."""
    return f"{principal.tenant}/{principal.subject}"


# What the trail records when a context id does not resolve to one of the caller's contexts:
# a denial (someone else's id, or none), never the id as typed.
NOT_OWNER = ("he-context", "not-owner")


async def read_capped(
    request: Request, cap: int, too_large: type[ServiceError] = PayloadTooLargeError
) -> bytes:
    """The body, refused as soon as it exceeds ``cap`` — before it is buffered or parsed
    (a declared Content-Length over the cap is refused before the first byte is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


def _not_owner(pipeline: Pipeline, facts: AuditFacts, context_id: str) -> AuditFacts:
    """An unresolved context id, recorded as a denial with a marker instead of the id."""
    return facts.decided(
        pipeline.unvouched("he-context", context_id),
        facts.action or "",
        Decision(allowed=False, rule=NOT_OWNER, policy_version=pipeline.policy.version or "-"),
    )


@router.get(
    "/v1/he/models/{name}",
    responses={
        200: {
            "description": "The model's CKKS evaluation plan (JSON).",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def plan(
    name: str, auth: Annotated[Authorized, authorize("he-model:{name}", "read")]
) -> Response:
    """The model's CKKS evaluation plan, from which the SDK builds a matching context."""
    he_plan = auth.pipeline.he_pool().plan(name)
    return auth.hand_back(
        auth.facts.detail(model=name), Response(he_plan.to_json(), media_type="application/json")
    )


@router.post(
    "/v1/he/contexts",
    status_code=201,
    response_model=ContextCreated,
    openapi_extra=binary_body(
        "A public TenSEAL context (no secret key) built by the "
        "SDK for the model's plan; at most 16 MiB."
    ),
)
async def register_context(
    request: Request,
    model: str,
    auth: Annotated[Authorized, authorize("he-context:register", "write")],
) -> dict[str, Any]:
    """Register a public evaluation context (no secret key) for one model."""
    pipeline, principal = auth.pipeline, auth.principal
    pool = pipeline.he_pool()
    if not pipeline.knows("he-model", model):  # 404 before reading megabytes
        raise NotFoundError("model has no HE plan")
    # The context is only useful for inference: require that right on the model too.
    decision = pipeline.authorize(principal, f"he-model:{model}", "infer")
    facts = auth.facts.detail(model=model)
    if not decision.allowed:
        raise AuthorizationError().with_facts(facts.decided(f"he-model:{model}", "infer", decision))
    try:
        async with pool.reserve(principal.tenant):
            # The tenant's own limits are checked before a byte of the body is buffered.
            allowance = await asyncio.to_thread(
                pool.upload_allowance, principal.tenant, _declared_length(request)
            )
            too_large = (
                PayloadTooLargeError
                if allowance >= pool.limits.max_context_bytes
                else TenantLimitError
            )
            body = await read_capped(request, allowance, too_large)
            await auth.write_ahead(facts)  # durable before the context is stored
            context_id = await pool.register_context(model, body, owner=owner_of(principal))
    except ServiceError as exc:
        exc.with_facts(facts)
        raise
    facts = facts.detail(
        he={
            "context_id": context_id,
            "context_bytes": len(body),
            "context_sha256": hashlib.sha256(body).hexdigest(),
        }
    )
    return auth.hand_back(
        facts, {"context_id": context_id, "model": model, "expires_in_s": pipeline.he_context_ttl_s}
    )


@router.delete("/v1/he/contexts/{context_id}", status_code=204, response_class=Response)
async def delete_context(
    context_id: str,
    auth: Annotated[Authorized, authorize("he-context:delete", "write")],
) -> Response:
    """Delete one of the caller's contexts."""
    pipeline = auth.pipeline
    pool = pipeline.he_pool()
    try:
        await asyncio.to_thread(pool.owned_context, context_id, owner_of(auth.principal))
    except NotFoundError as exc:
        raise exc.with_facts(_not_owner(pipeline, auth.facts, context_id)) from None
    facts = auth.facts.detail(he={"context_id": context_id})  # resolved: the caller's own id
    await auth.write_ahead(facts)  # durable before the context is deleted
    await asyncio.to_thread(pool.delete_owned, context_id)
    return auth.hand_back(facts, Response(status_code=204))


@router.post(
    "/v1/he/models/{name}/infer",
    response_class=Response,
    openapi_extra={
        **binary_body("An encrypted request frame (the SDK's wire format)."),
        "responses": _FRAME,
    },
)
async def infer(
    name: str,
    request: Request,
    auth: Annotated[Authorized, authorize("he-model:{name}", "infer")],
) -> Response:
    """Evaluate the model on ciphertexts under a registered context; ciphertexts back."""
    pipeline = auth.pipeline
    pool = pipeline.he_pool()
    he_plan = pool.plan(name)
    facts = auth.facts.detail(model=name)
    try:
        async with pool.reserve(auth.principal.tenant):
            body = await read_capped(request, request_cap(he_plan, pool.limits))
            frame = pool.decode(name, body)
            # What was asked: model, packing, size, digest; the context once resolved.
            asked = {
                "plan": he_plan.fingerprint,
                "packing": frame.packing,
                "samples": frame.n_samples,
                "bytes": len(body),
                "ciphertext_sha256": hashlib.sha256(body).hexdigest(),
            }
            facts = facts.detail(he=asked)
            try:
                record = await asyncio.to_thread(
                    pool.context_for, name, frame.context_id, owner_of(auth.principal)
                )
            except NotFoundError as exc:
                raise exc.with_facts(_not_owner(pipeline, facts, frame.context_id)) from None
            facts = facts.detail(he={**asked, "context_id": record.context_id})
            reply = await pool.evaluate(name, frame, record)
    except ServiceError as exc:
        if exc.facts is None:  # what was known when it failed goes to the record
            exc.with_facts(facts)
        raise
    return auth.hand_back(facts, Response(reply, media_type=CONTENT_TYPE))
