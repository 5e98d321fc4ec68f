"""Fakes for orchestration tests: a scriptable stand-in for the service, over real HTTP.

Where a test is about what a *client* of the service does (the SDK's retries, its SSE
decoding, its error mapping), the stand-in answers the routes the SDK calls with the
service's own request models (`schemas`, and `llm.wire` for chat, as the real chat route
does) and builds replies and SSE frames with `llm.wire`'s helpers. It can be scripted to
refuse requests (429/503 with ``Retry-After``; `Script.refuse`), and a few model names act
out failures on demand: ``sleepy`` (answers after 3 s), ``slow`` (a long stream),
``fail-mid`` (an error event mid-stream), ``cut`` (the stream ends without ``[DONE]``).
Streams are cut into pieces of 1 to 7 bytes, so frames, CRLFs and UTF-8 sequences straddle
reads. It accepts one key, `API_KEY`. It is not the service: no policy, no
scrubbing, no audit; behaviour of the real server is tested against the real server.

    with serve(create_app(Script())) as url:
        ...  # point the client under test at url
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from secure_aiaas.errors import OverloadedError
from secure_aiaas.llm import wire
from secure_aiaas.schemas import EmbeddingsRequest, ScrubRequest, V2InferRequest

API_KEY = "test-key"  # the one key the stand-in accepts
ANSWER_SUFFIX = " ✓\u2028終"  # non-ASCII, and a line separator JSON may carry unescaped


@dataclass
class Refusal:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    code: str = "overloaded"


@dataclass
class Script:
    """What the stand-in does next (refusals per path) and what it saw."""

    refusals: dict[str, list[Refusal]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)
    streams_closed: int = 0

    def refuse(self, path: str, *refusals: Refusal) -> None:
        self.refusals.setdefault(path, []).extend(refusals)

    def hits(self, path: str) -> int:
        return sum(1 for _, p in self.seen if p == path)


def answer(messages: list[wire.ChatMessage]) -> str:
    return "Écho: " + messages[-1].text() + ANSWER_SUFFIX


def pieces(data: bytes) -> Iterator[bytes]:
    """`data` cut into pieces of 1..7 bytes (a fixed pattern)."""
    i, n = 0, 0
    while i < len(data):
        size = 1 + (n * 5 + 3) % 7
        yield data[i : i + size]
        i, n = i + size, n + 1


def create_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def scripted(request: Request, call_next: Any) -> Response:
        path = request.url.path
        script.seen.append((request.method, path))
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"error": "missing or invalid API key", "code": "unauthenticated",
                                 "request_id": "req-401"}, status_code=401)  # fmt: skip
        queued = script.refusals.get(path)
        if queued:
            refusal = queued.pop(0)
            return JSONResponse({"error": "refused", "code": refusal.code, "request_id": "req-r"},
                                status_code=refusal.status, headers=refusal.headers)  # fmt: skip
        response: Response = await call_next(request)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid body", "code": "invalid_input"}, status_code=422)

    @app.get("/v1/whoami")
    async def whoami() -> dict[str, Any]:
        return {"tenant": "acme", "trust": "trusted", "subject": "alice", "roles": ["user"],
                "key_id": "k1", "operator": False}  # fmt: skip

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": "echo",
                    "object": "model",
                    "created": 1,
                    "owned_by": "secure_aiaas",
                    "task": "chat",
                }
            ],
        }

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> dict[str, Any]:
        return {"name": name, "versions": ["1"], "platform": "pytorch",
                "inputs": [{"name": "rows", "datatype": "FP32", "shape": [-1, 3]}],
                "outputs": [{"name": "sum", "datatype": "FP32", "shape": [-1, 1]}]}  # fmt: skip

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, body: V2InferRequest) -> dict[str, Any]:
        tensor = body.inputs[0]
        rows = np.asarray(tensor.data, dtype=np.float64).reshape(tensor.shape)
        sums = rows.sum(axis=1, keepdims=True)
        return {
            "model_name": name,
            "model_version": "1",
            "outputs": [
                {
                    "name": "sum",
                    "datatype": "FP64",
                    "shape": list(sums.shape),
                    "data": sums.ravel().tolist(),
                },
                {"name": "input_name", "datatype": "BYTES", "shape": [1], "data": [tensor.name]},
            ],
        }

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest) -> dict[str, Any]:
        vectors = [[float(len(t)), 1.0] for t in body.texts()]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": (
                    base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()
                    if body.encoding_format == "base64"
                    else v
                ),
            }
            for i, v in enumerate(vectors)
        ]
        data.reverse()  # the SDK orders by index
        return {"object": "list", "data": data, "model": body.model,
                "usage": {"prompt_tokens": 1, "total_tokens": 1}}  # fmt: skip

    @app.post("/v1/privacy/scrub")
    async def scrub(body: ScrubRequest) -> dict[str, Any]:
        if "json_value" in body.model_fields_set:
            return {"json": {"scrubbed": body.json_value}, "entity_counts": {}}
        texts = [body.text] if body.text is not None else list(body.texts or [])
        return {"results": [{"text": "<X>", "entities": []} for _ in texts],
                "entity_counts": {"X": len(texts)}}  # fmt: skip

    @app.post("/echo")
    async def echo() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/chat/completions")
    async def chat(body: wire.ChatCompletionRequest, request: Request) -> Response:
        script.chat_bodies.append(await request.json())
        if body.model == "sleepy":
            await asyncio.sleep(3)
        text = answer(body.messages)
        finish: wire.FinishReason = "stop"
        for stop in body.stop_sequences():
            if stop in text:
                text = text[: text.index(stop)]
        tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
        limit = body.token_limit()
        if limit is not None and limit < len(tokens):
            tokens, finish = tokens[:limit], "length"
        ids: dict[str, Any] = {
            "id": "chatcmpl-1", "created": 1, "model": body.model, "fingerprint": "fp",
        }  # fmt: skip
        if not body.stream:
            return JSONResponse(wire.chat_completion_body(
                **ids, text="".join(tokens), finish_reason=finish, prompt_tokens=5,
                completion_tokens=len(tokens)))  # fmt: skip
        return StreamingResponse(_frames(script, body, ids, tokens, finish),
                                 media_type=wire.SSE_MEDIA_TYPE)  # fmt: skip

    return app


async def _frames(
    script: Script,
    body: wire.ChatCompletionRequest,
    ids: dict[str, Any],
    tokens: list[str],
    finish: wire.FinishReason,
) -> AsyncIterator[bytes]:
    events = [
        ": keep-alive\n\n",
        wire.sse(wire.chat_chunk(**ids, delta={"role": "assistant", "content": ""})),
    ]
    if body.model == "slow":
        try:
            for _ in range(500):
                yield wire.sse(wire.chat_chunk(**ids, delta={"content": "."})).encode()
                await asyncio.sleep(0.01)
        finally:
            script.streams_closed += 1
        return
    events += [wire.sse(wire.chat_chunk(**ids, delta={"content": t})) for t in tokens]
    if body.model == "fail-mid":
        events = events[:3] + [wire.sse_error(OverloadedError(), status=503)]
    elif body.model == "cut":
        events = events[:3]
    else:
        events.append(wire.sse(wire.chat_chunk(**ids, delta={}, finish_reason=finish)))
        if body.include_usage():
            events.append(
                wire.sse(
                    wire.usage_chunk(
                        **ids,
                        object="chat.completion.chunk",
                        prompt_tokens=5,
                        completion_tokens=len(tokens),
                    )
                )
            )
        events.append(wire.SSE_DONE)
    for piece in pieces("".join(events).replace("\n", "\r\n").encode()):
        yield piece
        await asyncio.sleep(0)


@contextmanager
def serve(app: FastAPI, *, lifespan: Literal["on", "off"] = "off") -> Iterator[str]:
    """`app` on a loopback port for the duration; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("stand-in server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
