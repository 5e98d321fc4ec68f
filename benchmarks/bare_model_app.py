"""The baseline for serving: a bare FastAPI + torch endpoint with the same model and weights.

No authentication, policy, scrubbing, audit or batching: the fastest simple way to serve the
same model — the forward pass runs inline on the event loop (no thread hop), with
``SAIAAS_BENCH_TORCH_THREADS`` torch threads (default 1, as a model this small wants).
`SAIAAS_BENCH_MODELS_DIR` names the registry to load from.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request

from secure_aiaas.inference import ModelRegistry

torch.set_num_threads(int(os.environ.get("SAIAAS_BENCH_TORCH_THREADS", "1")))
registry = ModelRegistry(os.environ["SAIAAS_BENCH_MODELS_DIR"])
predictors = {name: registry.load(name, device="cpu") for name in ("digits-mlp", "text-embed")}
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/v2/models/digits-mlp/infer")
async def digits(request: Request) -> dict[str, Any]:
    spec = (await request.json())["inputs"][0]
    x = np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])
    out = predictors["digits-mlp"].predict(x)
    return {
        "model_name": "digits-mlp",
        "model_version": "1",
        "outputs": [
            {"name": k, "datatype": "FP32", "shape": list(v.shape), "data": v.reshape(-1).tolist()}
            for k, v in out.items()
        ],
    }


@app.post("/v1/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    body = await request.json()
    texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
    vectors = predictors["text-embed"].predict(texts)["embedding"]
    return {
        "object": "list",
        "model": "text-embed",
        "data": [
            {"object": "embedding", "index": i, "embedding": v.tolist()}
            for i, v in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
