"""Plaintext inference, KServe Open Inference Protocol v2 (the shape Triton clients speak).

Routes stay thin: the inference package validates and converts (`inference.v2`), the batcher
runs the forward pass off the event loop, the policy decides per model (object
``model:<name>``). The infer body is read by the route itself (JSON, or a JSON header plus
binary tensors): its JSON part is parsed under the same bounds as every body and validated
by `schemas.V2InferRequest` before the manifest checks.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from secure_aiaas import __version__
from secure_aiaas.api.bodies import BoundedRoute, parse_bounded
from secure_aiaas.api.deps import AuditDep, PipelineDep, authorize
from secure_aiaas.api.errors import validation_message
from secure_aiaas.api.routes.privacy import pii_counts, record_pii
from secure_aiaas.errors import InputError
from secure_aiaas.inference import (
    encode_infer_response,
    model_metadata,
    parse_infer_request,
    split_infer_body,
)
from secure_aiaas.schemas import (
    V2InferRequest,
    V2InferResponse,
    V2ModelMetadata,
    V2ModelReady,
    V2ServerMetadata,
)
from secure_aiaas.types import Principal

router = APIRouter(tags=["inference (KServe v2)"], route_class=BoundedRoute)
Infer = Annotated[Principal, authorize("model:{name}", "infer")]
Read = Annotated[Principal, authorize("model:{name}", "read")]

_INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "A v2 inference request as JSON, or (binary tensor extension) that JSON "
                       "followed by raw tensors, its length in `Inference-Header-Content-Length`.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/V2InferRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.get("/v2", response_model=V2ServerMetadata)
async def server_metadata(
    _principal: Annotated[Principal, authorize("identity", "read")],
) -> dict[str, Any]:
    """Server metadata (v2 protocol)."""
    return {"name": "secure_aiaas", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/models/{name}", response_model=V2ModelMetadata)
@router.get("/v2/models/{name}/versions/{version}", response_model=V2ModelMetadata)
async def metadata(name: str, _principal: Read, pipeline: PipelineDep, audit: AuditDep,
                   version: str | None = None) -> dict[str, Any]:
    """Model metadata: versions, inputs and outputs with shapes and datatypes."""
    pool = pipeline.model_pool()
    served = pool.get(name, version)
    audit.details.update(model=name, model_version=served.manifest.version)
    versions = sorted(m.version for m in pool.manifests() if m.name == name)
    return model_metadata(served.manifest, versions if version is None else None)


@router.get("/v2/models/{name}/ready", response_model=V2ModelReady)
@router.get("/v2/models/{name}/versions/{version}/ready", response_model=V2ModelReady)
async def model_ready(name: str, _principal: Read, pipeline: PipelineDep,
                      version: str | None = None) -> dict[str, Any]:
    """Whether the model (version) is loaded and serving."""
    served = pipeline.model_pool().get(name, version)
    return {"name": name, "version": served.manifest.version, "ready": True}


@router.post("/v2/models/{name}/infer", openapi_extra=_INFER_BODY,
             responses={200: {"model": V2InferResponse}})
@router.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=_INFER_BODY,
             responses={200: {"model": V2InferResponse}})
async def infer(name: str, request: Request, principal: Infer, pipeline: PipelineDep,
                audit: AuditDep, version: str | None = None) -> Response:
    """Run the model on the request's inputs (JSON, or JSON + binary tensors)."""
    served = pipeline.model_pool().get(name, version)
    audit.details.update(model=name, model_version=served.manifest.version)
    limits = request.app.state.limits
    header, tail = split_infer_body(await request.body(),
                                    request.headers.get("inference-header-content-length"))
    body = parse_bounded(header, limits)
    try:
        V2InferRequest.model_validate(body)
    except ValidationError as exc:
        raise InputError(validation_message(exc.errors())) from None
    parsed = parse_infer_request(body, served.manifest,
                                 max_batch=served.batcher.max_batch_size * 16, binary=tail,
                                 max_elements=limits.max_tensor_elements)
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

