"""The built-in chat model: converted once from the packaged GGUF, offline; a real answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_aiaas.errors import ConfigurationError
from secure_aiaas.inference import ModelRegistry
from secure_aiaas.llm import builtin
from secure_aiaas.llm.service import LLMService
from secure_aiaas.llm.wire import ChatCompletionRequest

pytestmark = pytest.mark.anyio


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
