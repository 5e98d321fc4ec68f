"""`Client.chat` against the LLM seam: the real engine (a tiny random model with a byte-level
tokenizer, so deltas split UTF-8 anywhere) and the real `Generation` bodies and SSE, behind the
test app of tests/llm/test_openai_http.py; the unmodified `openai` client as the reference."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from secure_aiaas.errors import ContextLengthError, NotFoundError
from secure_aiaas.inference import ModelRegistry
from secure_aiaas.llm.registry import register_causal_lm
from secure_aiaas.llm.service import Generation
from secure_aiaas.sdk import AsyncClient, Client
from secure_aiaas.testing import serve
from tests.llm.test_openai_http import build_app
from tests.llm.tiny import save_tiny

NAME = "tiny-chat"
MESSAGES = [{"role": "system", "content": "Answer."}, {"role": "user", "content": "Grüß dich"}]


@dataclass
class Seam:
    url: str
    generations: list[Generation]


@pytest.fixture(scope="module")
def seam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seam]:
    root = tmp_path_factory.mktemp("sdk-llm")
    registry = ModelRegistry(Path(root) / "data")
    register_causal_lm(registry, save_tiny(Path(root) / "src"), name=NAME)
    generations: list[Generation] = []
    with serve(build_app(registry, generations), lifespan="on") as url:
        yield Seam(url, generations)


def test_same_answer_streamed_or_not_and_as_openai_gets_it(seam: Seam) -> None:
    reference = openai.OpenAI(base_url=f"{seam.url}/v1", api_key="unused", max_retries=0)
    expected = reference.chat.completions.create(
        model=NAME, messages=MESSAGES, temperature=0, max_tokens=24
    )  # type: ignore[arg-type]
    with Client(seam.url, "unused") as client:
        whole = client.chat(NAME, MESSAGES, temperature=0, max_tokens=24)
        stream = client.chat(NAME, MESSAGES, temperature=0, max_tokens=24, stream=True)
        deltas = list(stream)
    assert whole.text == expected.choices[0].message.content
    assert whole.finish_reason == expected.choices[0].finish_reason
    assert "".join(deltas) == whole.text == stream.text
    assert stream.finish_reason == whole.finish_reason
    assert whole.usage is not None and stream.usage is not None
    assert stream.usage.completion_tokens == whole.usage.completion_tokens <= 24


def test_async_stream_and_seeded_sampling(seam: Seam) -> None:
    async def main() -> tuple[str, str]:
        async with AsyncClient(seam.url, "unused") as client:
            sampled = await client.chat(NAME, MESSAGES, temperature=1.0, seed=11, max_tokens=16)
            stream = await client.chat(NAME, MESSAGES, temperature=1.0, seed=11, max_tokens=16,
                                       stream=True)  # fmt: skip
            return sampled.text, "".join([d async for d in stream])

    sampled, streamed = asyncio.run(main())
    assert sampled == streamed


def test_service_errors_map_to_sdk_errors(seam: Seam) -> None:
    with Client(seam.url, "unused") as client:
        with pytest.raises(ContextLengthError):
            client.chat(NAME, MESSAGES, max_tokens=5000)
        with pytest.raises(NotFoundError):
            client.chat("absent", MESSAGES)
        with pytest.raises(NotFoundError):
            client.chat("absent", MESSAGES, stream=True)


def test_closing_a_stream_early_cancels_the_generation(seam: Seam) -> None:
    before = len(seam.generations)
    with Client(seam.url, "unused") as client:
        with client.chat(NAME, MESSAGES, temperature=0, max_tokens=200, stream=True) as stream:
            next(stream)
            next(stream)
    generation = seam.generations[before]
    deadline = time.monotonic() + 10
    while generation.outcome is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert generation.outcome is not None
    assert generation.outcome.finish_reason == "cancelled"
    assert 0 < generation.outcome.completion_tokens < 200
