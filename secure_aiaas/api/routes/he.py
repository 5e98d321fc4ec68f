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

from secure_aiaas.api.deps import AuditDep, PipelineDep, authorize
from secure_aiaas.crypto.he_wire import CONTENT_TYPE, decode_request
from secure_aiaas.errors import AuthorizationError, PayloadTooLargeError
from secure_aiaas.he import ciphertext_cap, request_cap
from secure_aiaas.types import Principal

router = APIRouter(tags=["encrypted inference (CKKS)"])


def owner_of(principal: Principal) -> str:
    """Contexts belong to one subject in one tenant."""
    return f"{principal.tenant}/{principal.subject}"


async def read_capped(request: Request, cap: int) -> bytes:
    """The body, refused (413) as soon as it exceeds ``cap`` — before it is parsed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLargeError()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLargeError()
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/v1/he/models/{name}")
async def plan(name: str, _principal: Annotated[Principal, authorize("he-model:{name}", "read")],
               pipeline: PipelineDep, audit: AuditDep) -> Response:
    """The model's CKKS evaluation plan, from which the SDK builds a matching context."""
    he_plan = pipeline.he_pool().plan(name)
    audit.details.update(model=name)
    return Response(he_plan.to_json(), media_type="application/json")


@router.post("/v1/he/contexts", status_code=201)
async def register_context(
    request: Request, model: str,
    principal: Annotated[Principal, authorize("he-context:register", "write")],
    pipeline: PipelineDep, audit: AuditDep,
) -> dict[str, Any]:
    """Register a public evaluation context (no secret key) for one model."""
    pool = pipeline.he_pool()
    pool.plan(model)  # 404 for an unknown model before reading megabytes
    # The context is only useful for inference: require that right on the model too.
    decision = pipeline.authorize(principal, f"he-model:{model}", "infer")
    if not decision.allowed:
        audit.decision = decision
        raise AuthorizationError()
    body = await read_capped(request, pool.limits.max_context_bytes)
    context_id = await pool.register_context(model, body, owner=owner_of(principal))
    audit.details.update(model=model, he={"context_id": context_id, "context_bytes": len(body),
                                          "context_sha256": hashlib.sha256(body).hexdigest()})
    return {"context_id": context_id, "model": model,
            "expires_in_s": pipeline.he_context_ttl_s}


@router.delete("/v1/he/contexts/{context_id}", status_code=204)
async def delete_context(
    context_id: str, principal: Annotated[Principal, authorize("he-context:delete", "write")],
    pipeline: PipelineDep, audit: AuditDep,
) -> Response:
    """Delete one of the caller's contexts."""
    await asyncio.to_thread(pipeline.he_pool().delete_context, context_id,
                            owner=owner_of(principal))
    audit.details.update(he={"context_id": context_id})
    return Response(status_code=204)


@router.post("/v1/he/models/{name}/infer")
async def infer(
    name: str, request: Request,
    principal: Annotated[Principal, authorize("he-model:{name}", "infer")],
    pipeline: PipelineDep, audit: AuditDep,
) -> Response:
    """Evaluate the model on ciphertexts under a registered context; ciphertexts back."""
    pool = pipeline.he_pool()
    he_plan = pool.plan(name)
    body = await read_capped(request, request_cap(he_plan, pool.limits))
    # Audit what was asked, before evaluation: model, context, packing, size, digest.
    frame = decode_request(body, max_body=request_cap(he_plan, pool.limits),
                           max_ciphertexts=max(he_plan.batched.input_ciphertexts,
                                               pool.limits.max_samples_single),
                           max_ciphertext_bytes=ciphertext_cap(he_plan))
    audit.details.update(model=name, he={"plan": he_plan.fingerprint,
        "context_id": frame.context_id, "packing": frame.packing, "samples": frame.n_samples,
        "ciphertext_sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)})
    reply = await pool.infer(name, body, owner=owner_of(principal))
    return Response(reply, media_type=CONTENT_TYPE)


