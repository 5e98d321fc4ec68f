"""OpenAI-compatible routes for text models: `GET /v1/models`, `POST /v1/embeddings`.

Same JSON shapes as OpenAI's, so the official `openai` client works unmodified (including its
default base64 encoding of embeddings).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Request

from secure_aiaas.api.deps import AuditDep, PipelineDep, authorize, authorize_body
from secure_aiaas.api.routes.privacy import pii_counts, record_pii
from secure_aiaas.errors import InputError, NotFoundError
from secure_aiaas.inference import coerce_texts
from secure_aiaas.types import Principal

router = APIRouter(tags=["OpenAI-compatible"])


@router.get("/v1/models")
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


@router.post("/v1/embeddings")
async def embeddings(request: Request,
                     principal: Annotated[Principal, authorize_body("model:{}", "model", "infer")],
                     pipeline: PipelineDep, audit: AuditDep) -> dict[str, Any]:
    """Sentence embeddings (OpenAI shape; `encoding_format` float or base64)."""
    body = await request.json()
    name = body["model"]
    served = pipeline.model_pool().get(name)
    if served.manifest.task != "embedding":
        raise NotFoundError("model is not a text-embedding model")
    audit.details.update(model=name, model_version=served.manifest.version)
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InputError("encoding_format: expected 'float' or 'base64'")
    texts = coerce_texts(body.get("input"), "input")
    audit.details["rows"] = len(texts)
    # No personal data reaches the model: embed the scrubbed texts.
    scrubbed = await pipeline.scrub(principal, texts, model=name)
    record_pii(audit, pii_counts(scrubbed))
    texts = [r.text for r in scrubbed]
    vectors = np.asarray((await served.infer(texts))["embedding"], dtype=np.float32)
    tokens = pipeline.count_tokens(served, texts)
    data = [{"object": "embedding", "index": i,
             "embedding": (base64.b64encode(v.astype("<f4").tobytes()).decode()
                           if encoding == "base64" else v.tolist())}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
