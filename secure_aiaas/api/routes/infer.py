"""Plaintext inference, KServe Open Inference Protocol v2 (the shape Triton clients speak).

Routes stay thin: the inference package validates and converts (`inference.v2`), the batcher
runs the forward pass off the event loop, the policy decides per model (object
``model:<name>``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from secure_aiaas import __version__
from secure_aiaas.api.deps import AuditDep, PipelineDep, authorize
from secure_aiaas.api.routes.privacy import pii_counts, record_pii
from secure_aiaas.inference import (
    decode_infer_body,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
)
from secure_aiaas.types import Principal

router = APIRouter(tags=["inference (KServe v2)"])
Infer = Annotated[Principal, authorize("model:{name}", "infer")]
Read = Annotated[Principal, authorize("model:{name}", "read")]


@router.get("/v2")
async def server_metadata(
    _principal: Annotated[Principal, authorize("identity", "read")],
) -> dict[str, Any]:
    """Server metadata (v2 protocol)."""
    return {"name": "secure_aiaas", "version": __version__, "extensions": []}


@router.get("/v2/models/{name}")
@router.get("/v2/models/{name}/versions/{version}")
async def metadata(name: str, _principal: Read, pipeline: PipelineDep, audit: AuditDep,
                   version: str | None = None) -> dict[str, Any]:
    """Model metadata: versions, inputs and outputs with shapes and datatypes."""
    pool = pipeline.model_pool()
    served = pool.get(name, version)
    audit.details.update(model=name, model_version=served.manifest.version)
    versions = sorted(m.version for m in pool.manifests() if m.name == name)
    return model_metadata(served.manifest, versions if version is None else None)


@router.get("/v2/models/{name}/ready")
@router.get("/v2/models/{name}/versions/{version}/ready")
async def model_ready(name: str, _principal: Read, pipeline: PipelineDep,
                      version: str | None = None) -> dict[str, Any]:
    """Whether the model (version) is loaded and serving."""
    served = pipeline.model_pool().get(name, version)
    return {"name": name, "version": served.manifest.version, "ready": True}


@router.post("/v2/models/{name}/infer")
@router.post("/v2/models/{name}/versions/{version}/infer")
async def infer(name: str, request: Request, principal: Infer, pipeline: PipelineDep,
                audit: AuditDep, version: str | None = None) -> Response:
    """Run the model on the request's inputs (JSON, or JSON + binary tensors)."""
    served = pipeline.model_pool().get(name, version)
    audit.details.update(model=name, model_version=served.manifest.version)
    body, tail = decode_infer_body(await request.body(),
                                   request.headers.get("inference-header-content-length"))
    parsed = parse_infer_request(body, served.manifest,
                                 max_batch=served.batcher.max_batch_size * 16, binary=tail)
    audit.details["rows"] = parsed.rows
    item = parsed.single
    if isinstance(item, list):  # BYTES input: text never reaches the model unscrubbed
        scrubbed = await pipeline.scrub(principal, item, model=name)
        record_pii(audit, pii_counts(scrubbed))
        item = [r.text for r in scrubbed]
    outputs = await served.infer(item)
    content, header_length = encode_infer_response(served.manifest, outputs, parsed)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(header_length)})


