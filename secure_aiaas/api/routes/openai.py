"""OpenAI-compatible routes for text models: `GET /v1/models`, `POST /v1/embeddings`.

Same JSON shapes as OpenAI's, so the official `openai` client works unmodified (including its
default base64 encoding of embeddings).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import Authorized, authorize, authorize_body
from secure_aiaas.errors import NotFoundError
from secure_aiaas.schemas import EmbeddingsRequest, EmbeddingsResponse, ModelList

router = APIRouter(tags=["OpenAI-compatible"], route_class=BoundedRoute)


@router.get("/v1/models", response_model=ModelList)
async def list_models(auth: Annotated[Authorized, authorize("models", "list")]) -> dict[str, Any]:
    """The models this caller may use: plaintext models and chat models."""
    pipeline = auth.pipeline
    data = []
    for manifest in sorted(pipeline.model_pool().manifests(), key=lambda m: (m.name, m.version)):
        if pipeline.authorize(auth.principal, f"model:{manifest.name}", "infer").allowed:
            data.append(
                {
                    "id": manifest.name,
                    "object": "model",
                    "created": int(manifest.created_at.timestamp()),
                    "owned_by": "secure_aiaas",
                    "version": manifest.version,
                    "task": manifest.task,
                }
            )
    chat = pipeline.chat
    for service in chat.services() if chat is not None else []:
        if pipeline.authorize(auth.principal, f"llm:{service.name}", "generate").allowed:
            data.append({**service.card(), "task": "text-generation"})
    return auth.hand_back(auth.facts, {"object": "list", "data": data})


@router.post("/v1/embeddings", response_model=EmbeddingsResponse)
async def embeddings(
    body: EmbeddingsRequest,
    auth: Annotated[Authorized, authorize_body("model:{}", "model", "infer")],
) -> dict[str, Any]:
    """Sentence embeddings (OpenAI shape; `encoding_format` float or base64)."""
    pipeline = auth.pipeline
    served, facts = pipeline.served_model(body.model, None, auth.facts)
    if served.manifest.task != "embedding":
        raise NotFoundError("model is not a text-embedding model").with_facts(facts)
    texts = body.texts()
    facts = facts.detail(rows=len(texts))
    # No personal data reaches the model: the pipeline embeds the scrubbed texts.
    scrubbed, facts = await pipeline.scrub(auth.principal, texts, facts, model=body.model)
    clean = [r.text for r in scrubbed]
    vectors = np.asarray((await served.infer(clean))["embedding"], dtype=np.float32)
    tokens = pipeline.count_tokens(served, clean)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": (
                base64.b64encode(v.astype("<f4").tobytes()).decode()
                if body.encoding_format == "base64"
                else v.tolist()
            ),
        }
        for i, v in enumerate(vectors)
    ]
    return auth.hand_back(
        facts,
        {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
    )
