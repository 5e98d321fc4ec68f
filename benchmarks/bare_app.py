"""The baseline: a bare FastAPI app with the same route and reply, nothing in front of it."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/v1/whoami")
async def whoami() -> dict[str, object]:
    return {
        "tenant": "acme",
        "trust": "trusted",
        "subject": "alice",
        "roles": ["user"],
        "key_id": "k_0000000000000000",
    }
