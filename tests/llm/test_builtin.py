"""The built-in chat model: converted once from the packaged GGUF, offline; a real answer,
in process and through the whole secure path over HTTP (one conversion for both: it costs
~20 s of CPU here)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from secure_aiaas.errors import ConfigurationError
from secure_aiaas.inference import ModelRegistry
from secure_aiaas.llm import builtin
from secure_aiaas.llm.service import LLMService
from secure_aiaas.llm.wire import ChatCompletionRequest
from tests.conftest import (
    private_server,
    stop_server,
)
from tests.support.audit import request_records


def test_the_packaged_gguf_is_the_pinned_file(monkeypatch: pytest.MonkeyPatch) -> None:
    assert builtin.packaged_gguf().name == builtin.GGUF_FILE
    monkeypatch.setattr(builtin, "GGUF_SHA256", "0" * 64)
    with pytest.raises(ConfigurationError):
        builtin.packaged_gguf()


@pytest.fixture(scope="session")
def builtin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("llm-builtin")
    converted = builtin.ensure_builtin_chat_model(data_dir)
    assert [m.id for m in converted] == [f"{builtin.BUILTIN_CHAT_MODEL}:1"]
    return data_dir


@pytest.mark.slow
def test_conversion_is_registered_once_with_every_file_hashed(builtin_dir: Path) -> None:
    assert builtin.ensure_builtin_chat_model(builtin_dir) == []  # idempotent
    manifest = ModelRegistry(builtin_dir).verify(builtin.BUILTIN_CHAT_MODEL)
    assert manifest.task == "text-generation" and manifest.architecture == "llama"
    assert {"config.json", "tokenizer.json", "chat_template.jinja"} <= set(manifest.assets)
    assert manifest.training["source_sha256"] == builtin.GGUF_SHA256
    config = ModelRegistry(builtin_dir).path(builtin.BUILTIN_CHAT_MODEL) / "config.json"
    assert "quantization_config" not in config.read_text()


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_greedy_answer_to_the_capital_of_france(builtin_dir: Path) -> None:
    service = LLMService.load(ModelRegistry(builtin_dir), builtin.BUILTIN_CHAT_MODEL, device="cpu")
    service.start()
    try:
        request = ChatCompletionRequest.model_validate(
            {
                "model": builtin.BUILTIN_CHAT_MODEL,
                "temperature": 0,
                "max_tokens": 24,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
            }
        )
        body = await service.submit(service.prepare_chat(request, request.message_texts())).body()
        assert "Paris" in body["choices"][0]["message"]["content"]
        assert body["choices"][0]["finish_reason"] == "stop"
    finally:
        await service.close()


@pytest.mark.slow
def test_builtin_model_over_http(builtin_dir: Path, tmp_path: Path) -> None:
    """The built-in SmolLM2 through the whole path: a greedy answer that names Paris, and a
    stream the client hangs up on, recorded as 499. The server reads the session's
    conversion (a models directory is read-only to a server)."""
    server = private_server(
        tmp_path, SAIAAS_MODELS_DIR=str(builtin_dir), SAIAAS_HE__ENABLED="false"
    )
    keys = server.api_keys
    try:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=keys["alice"])
        reply = client.chat.completions.create(
            model=builtin.BUILTIN_CHAT_MODEL,
            temperature=0,
            max_tokens=24,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        assert "Paris" in (reply.choices[0].message.content or "")
        # A client that goes away mid-stream: the outcome is recorded, as 499.
        server.api_keys = keys
        headers = {"Authorization": f"Bearer {keys['alice']}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            with http.stream(
                "POST",
                "/v1/chat/completions",
                json={
                    "model": builtin.BUILTIN_CHAT_MODEL,
                    "max_tokens": 400,
                    "stream": True,
                    "messages": [{"role": "user", "content": "Tell a long story."}],
                },
            ) as response:
                request_id = response.headers["x-request-id"]
                for _ in response.iter_lines():
                    break  # the first event, then hang up
        deadline = time.monotonic() + 20
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(records) < 2:
            time.sleep(0.3)
            records = request_records(server, request_id)
        attempt, outcome = records
        assert attempt["decision"] == "attempt" and outcome["status"] == 499
        assert outcome["details"]["llm"]["finish_reason"] == "cancelled"
    finally:
        stop_server(server)
