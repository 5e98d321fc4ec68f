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
from secure_aiaas.api.deps import Authorized, authorize
from secure_aiaas.api.errors import validation_message
from secure_aiaas.errors import InputError, ServiceError
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

router = APIRouter(tags=["inference (KServe v2)"], route_class=BoundedRoute)
Infer = Annotated[Authorized, authorize("model:{name}", "infer")]
Read = Annotated[Authorized, authorize("model:{name}", "read")]

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
    auth: Annotated[Authorized, authorize("identity", "read")],
) -> dict[str, Any]:
    """Server metadata (v2 protocol)."""
    return auth.hand_back(
        auth.facts,
        {"name": "secure_aiaas", "version": __version__, "extensions": ["binary_tensor_data"]},
    )


@router.get("/v2/models/{name}", response_model=V2ModelMetadata)
@router.get("/v2/models/{name}/versions/{version}", response_model=V2ModelMetadata)
async def metadata(name: str, auth: Read, version: str | None = None) -> dict[str, Any]:
    """Model metadata: versions, inputs and outputs with shapes and datatypes."""
    served, facts = auth.pipeline.served_model(name, version, auth.facts)
    versions = sorted(m.version for m in auth.pipeline.model_pool().manifests() if m.name == name)
    return auth.hand_back(
        facts, model_metadata(served.manifest, versions if version is None else None)
    )


@router.get("/v2/models/{name}/ready", response_model=V2ModelReady)
@router.get("/v2/models/{name}/versions/{version}/ready", response_model=V2ModelReady)
async def model_ready(name: str, auth: Read, version: str | None = None) -> dict[str, Any]:
    """Whether the model (version) is loaded and serving."""
    served, facts = auth.pipeline.served_model(name, version, auth.facts)
    return auth.hand_back(facts, {"name": name, "version": served.manifest.version, "ready": True})


@router.post(
    "/v2/models/{name}/infer",
    openapi_extra=_INFER_BODY,
    responses={200: {"model": V2InferResponse}},
)
@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    openapi_extra=_INFER_BODY,
    responses={200: {"model": V2InferResponse}},
)
async def infer(name: str, request: Request, auth: Infer, version: str | None = None) -> Response:
    """Run the model on the request's inputs (JSON, or JSON + binary tensors)."""
    pipeline = auth.pipeline
    served, facts = pipeline.served_model(name, version, auth.facts)
    limits = request.app.state.limits
    try:
        header, tail = split_infer_body(
            await request.body(), request.headers.get("inference-header-content-length")
        )
        body = parse_bounded(header, limits)
        try:
            V2InferRequest.model_validate(body)
        except ValidationError as exc:
            raise InputError(validation_message(exc.errors())) from None
        parsed = parse_infer_request(
            body,
            served.manifest,
            max_batch=served.batcher.max_batch_size * 16,
            binary=tail,
            max_elements=limits.max_tensor_elements,
        )
    except ServiceError as exc:
        exc.with_facts(facts)
        raise
    facts = facts.detail(rows=parsed.rows)
    outputs, facts = await pipeline.infer(auth.principal, served, parsed.single, facts)
    content, header_length = encode_infer_response(served.manifest, outputs, parsed)
    if header_length is None:
        return auth.hand_back(facts, Response(content, media_type="application/json"))
    return auth.hand_back(
        facts,
        Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        ),
    )
