"""OpenAI-compatible routes for text models: `GET /v1/models`, `POST /v1/embeddings`.

Same JSON shapes as OpenAI's, so the official `openai` client works unmodified (including its
default base64 encoding of embeddings).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Request

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import AuditDep, PipelineDep, authorize, authorize_body
from secure_aiaas.api.routes.privacy import pii_counts, record_pii
from secure_aiaas.errors import NotFoundError
from secure_aiaas.schemas import EmbeddingsRequest, EmbeddingsResponse, ModelList
from secure_aiaas.types import Principal

router = APIRouter(tags=["OpenAI-compatible"], route_class=BoundedRoute)


@router.get("/v1/models", response_model=ModelList)
async def list_models(principal: Annotated[Principal, authorize("models", "list")],
                      pipeline: PipelineDep) -> dict[str, Any]:
    """The models this caller may use for plaintext inference."""
    pool = pipeline.model_pool()
    data = []
    for manifest in sorted(pool.manifests(), key=lambda m: (m.name, m.version)):
        if pipeline.authorize(principal, f"model:{manifest.name}", "infer").allowed:
            data.append({"id": manifest.name, "object": "model",
                         "created": int(manifest.created_at.timestamp()),
                         "owned_by": "secure_aiaas", "version": manifest.version,
                         "task": manifest.task})
    return {"object": "list", "data": data}


@router.post("/v1/embeddings", response_model=EmbeddingsResponse)
async def embeddings(body: EmbeddingsRequest, request: Request,
                     principal: Annotated[Principal, authorize_body("model:{}", "model", "infer")],
                     pipeline: PipelineDep, audit: AuditDep) -> dict[str, Any]:
    """Sentence embeddings (OpenAI shape; `encoding_format` float or base64)."""
    served = pipeline.model_pool().get(body.model)
    if served.manifest.task != "embedding":
        raise NotFoundError("model is not a text-embedding model")
    audit.details.update(model=body.model, model_version=served.manifest.version)
    texts = body.texts()
    audit.details["rows"] = len(texts)
    # No personal data reaches the model: embed the scrubbed texts.
    scrubbed = await pipeline.scrub(principal, texts, model=body.model)
    record_pii(audit, pii_counts(scrubbed))
    texts = [r.text for r in scrubbed]
    vectors = np.asarray((await served.infer(texts))["embedding"], dtype=np.float32)
    tokens = pipeline.count_tokens(served, texts)
    data = [{"object": "embedding", "index": i,
             "embedding": (base64.b64encode(v.astype("<f4").tobytes()).decode()
                           if body.encoding_format == "base64" else v.tolist())}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
