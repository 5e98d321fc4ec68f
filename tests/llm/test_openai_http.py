"""The unmodified `openai` client over real HTTP against the seam, streamed and not.

The service's own routes are wired elsewhere (authentication, policy, scrubbing, audit); this
test app does only what `secure_aiaas.llm.service` documents a route doing after those steps,
so it proves the wire format, the SSE framing and disconnect handling end to end with uvicorn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from secure_aiaas.errors import InputError, ServiceError
from secure_aiaas.inference import ModelRegistry
from secure_aiaas.llm.config import EngineConfig
from secure_aiaas.llm.pool import ChatModelPool
from secure_aiaas.llm.registry import register_causal_lm
from secure_aiaas.llm.service import Generation
from secure_aiaas.llm.wire import (
    SSE_MEDIA_TYPE,
    ChatCompletionRequest,
    CompletionRequest,
    service_error_body,
)
from secure_aiaas.testing import serve
from tests.llm.tiny import save_tiny

NAME = "tiny-chat"


class PacedSteps:
    """At least 3 ms per engine step, so a 200-token answer outlives a quick disconnect."""

    def on_step(self, record: Any) -> None:
        time.sleep(0.003)

    def on_first_token(self, seconds: float) -> None: ...
    def on_token_gap(self, seconds: float) -> None: ...
    def on_finish(self, event: Any) -> None: ...


def build_app(registry: ModelRegistry, generations: list[Generation]) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    pool = ChatModelPool(
        registry,
        device="cpu",
        dtype="float32",
        config=EngineConfig(repetition_penalty=1.0),
        observer_for=lambda name: PacedSteps(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await pool.start()
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(ServiceError)
    async def _error(request: Request, exc: ServiceError) -> JSONResponse:
        status = 422 if isinstance(exc, InputError) else 404 if exc.code == "not_found" else 503
        return JSONResponse(service_error_body(exc, status=status), status_code=status)

    def respond(generation: Generation, stream: bool) -> Any:
        generations.append(generation)
        if stream:
            return StreamingResponse(generation.sse(), media_type=SSE_MEDIA_TYPE)
        return generation.body()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": pool.cards()}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest) -> Any:
        service = pool.get(body.model)
        prompt = await asyncio.to_thread(service.prepare_chat, body, body.message_texts())
        answer = respond(service.submit(prompt), body.stream)
        return answer if body.stream else await answer

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        service = pool.get(body.model)
        prompt = await asyncio.to_thread(service.prepare_completion, body, body.prompt_text())
        answer = respond(service.submit(prompt), body.stream)
        return answer if body.stream else await answer

    return app


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Generation]]]:
    root = tmp_path_factory.mktemp("llm-http")
    registry = ModelRegistry(Path(root) / "data")
    register_causal_lm(registry, save_tiny(Path(root) / "src"), name=NAME)
    generations: list[Generation] = []
    with serve(build_app(registry, generations), lifespan="on") as url:
        yield url, generations


@pytest.fixture
def client(server: tuple[str, list[Generation]]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused", max_retries=0)


MESSAGES = [{"role": "user", "content": "Hello there"}]


def test_chat_in_both_modes(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model=NAME,
        messages=MESSAGES,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=12,
    )
    content = whole.choices[0].message.content
    assert isinstance(content, str) and whole.usage is not None
    assert whole.usage.completion_tokens <= 12
    chunks = list(
        client.chat.completions.create(
            model=NAME,
            messages=MESSAGES,
            temperature=0,
            max_tokens=12,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_in_both_modes(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=NAME, prompt="Once upon", temperature=0, max_tokens=6)
    streamed = list(
        client.completions.create(
            model=NAME, prompt="Once upon", temperature=0, max_tokens=6, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text


def test_models_and_errors_in_openai_shape(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [NAME]
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model=NAME, max_tokens=5000, messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="absent", messages=MESSAGES)  # type: ignore[arg-type]


def test_a_client_disconnect_cancels_generation(server: tuple[str, list[Generation]]) -> None:
    base, generations = server
    body = {
        "model": NAME,
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": 200,
        "temperature": 0,
    }
    before = len(generations)
    with httpx.Client(base_url=base, timeout=10) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = (line for line in response.iter_lines() if line.startswith("data: "))
            for _ in range(3):  # the role chunk and two chunks of the answer
                next(events)
        # leaving the block closes the connection mid-answer
    generation = generations[before]
    deadline = time.monotonic() + 10
    while generation.outcome is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert generation.outcome is not None
    assert generation.outcome.finish_reason == "cancelled"
    assert 0 < generation.outcome.completion_tokens < 200
    engine = generation._service.engine
    while engine.stats().active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.stats().active == 0  # the slot is free again
