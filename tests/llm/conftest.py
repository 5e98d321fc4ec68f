"""Tiny random causal LMs for the engine and service tests (built in the test run, fp32 CPU)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.llm.config import EngineConfig
from secure_aiaas.llm.engine import Finished, LLMEngine, StepRecord, TokenDelta
from secure_aiaas.llm.sampling import SamplingParams
from tests.llm.tiny import byte_tokenizer, save_tiny, tiny_model


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tiny() -> Any:
    return tiny_model("llama")


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return byte_tokenizer()


def decode_with(tokenizer: Any) -> Any:
    return lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True)


class Recorder:
    """An EngineObserver that keeps everything (tests read it after the run)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.steps: list[StepRecord] = []
        self.first_tokens: list[float] = []
        self.gaps: list[float] = []
        self.finished: list[Finished] = []
        self.gate = gate  # when set, each step waits for it: lets a test act between steps

    def on_step(self, record: StepRecord) -> None:
        self.steps.append(record)
        if self.gate is not None:
            self.gate.wait(timeout=5)

    def on_first_token(self, seconds: float) -> None:
        self.first_tokens.append(seconds)

    def on_token_gap(self, seconds: float) -> None:
        self.gaps.append(seconds)

    def on_finish(self, event: Finished) -> None:
        self.finished.append(event)


@pytest.fixture
def make_engine(tiny: Any, tokenizer: Any) -> Iterator[Any]:
    """Build (and later close) engines over the tiny model; call inside a running loop."""
    engines: list[LLMEngine] = []

    def build(observer: Any = None, **config: Any) -> LLMEngine:
        options = {"repetition_penalty": 1.0, **config}
        engine = LLMEngine(
            tiny,
            decode=decode_with(tokenizer),
            eos_token_ids=[2],
            context_limit=256,
            config=EngineConfig(**options),
            observer=observer,
        )
        engine.start()
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine._closing = True  # closed in the test's loop normally; this is the safety net
        with engine._lock:
            engine._lock.notify_all()
        if engine._thread is not None:
            engine._thread.join(timeout=10)


async def collect(stream: Any) -> tuple[str, Finished]:
    text = []
    finished = None
    async for event in stream:
        if isinstance(event, TokenDelta):
            text.append(event.text)
        else:
            finished = event
    assert finished is not None
    return "".join(text), finished


def greedy(max_tokens: int, **kwargs: Any) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, **kwargs)


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    return save_tiny(tmp_path / "tiny-llama", "llama")
