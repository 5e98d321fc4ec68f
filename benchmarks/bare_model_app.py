"""The baseline for serving: a bare FastAPI + torch endpoint with the same model and weights.

No authentication, policy, scrubbing, audit or batching: one forward pass per request in
FastAPI's thread pool. `SAIAAS_BENCH_MODELS_DIR` names the registry to load from.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from fastapi import FastAPI, Request

from secure_aiaas.inference import ModelRegistry

torch.set_num_threads(1)
registry = ModelRegistry(os.environ["SAIAAS_BENCH_MODELS_DIR"])
predictors = {name: registry.load(name, device="cpu") for name in ("digits-mlp", "text-embed")}
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/v2/models/digits-mlp/infer")
def digits(body: dict) -> dict:  # type: ignore[type-arg]
    spec = body["inputs"][0]
    x = np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])
    out = predictors["digits-mlp"].predict(x)
    return {"model_name": "digits-mlp", "outputs": [
        {"name": k, "shape": list(v.shape), "data": v.reshape(-1).tolist()} for k, v in out.items()]}


@app.post("/v1/embeddings")
async def embeddings(request: Request) -> dict:  # type: ignore[type-arg]
    body = await request.json()
    texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
    from starlette.concurrency import run_in_threadpool

    vectors = (await run_in_threadpool(predictors["text-embed"].predict, texts))["embedding"]
    return {"object": "list", "model": "text-embed", "data": [
        {"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]}
