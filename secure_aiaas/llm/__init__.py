"""llm: chat and completion models as a service, below the HTTP layer.

* `registry` / `builtin`: chat models in the model registry (Hugging Face causal-LM folders,
  safetensors only, SHA-256 checked at every load); the built-in SmolLM2 converted once.
* `engine`: continuous batching with a KV cache in a thread of its own.
* `restore`: placeholders in answers back to the request's original values.
* `wire`: OpenAI-compatible request models, response/chunk bodies, SSE, error bodies.
* `pool` / `service`: the seam the routes call (`ChatModelPool` -> `LLMService` ->
  `Generation`); `config`: the engines' bounds.

Lifespan::

    chat = ChatModelPool(ModelRegistry(settings.data_dir), priority_of=current_priority,
                         observer_for=lambda name: MetricsObserver(metrics, name))
    await chat.start()           # verify + load + start each engine, off the event loop
    ...
    await chat.close()

Importing this package does not import torch or transformers; the names that need them
load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from secure_aiaas.llm.restore import PlaceholderMap, Restorer, StreamRestorer
from secure_aiaas.llm.wire import ChatCompletionRequest, CompletionRequest

if TYPE_CHECKING:
    from secure_aiaas.llm.builtin import BUILTIN_CHAT_MODEL, ensure_builtin_chat_model
    from secure_aiaas.llm.config import EngineConfig
    from secure_aiaas.llm.engine import (
        EngineObserver,
        Finished,
        LLMEngine,
        StepRecord,
        TokenDelta,
    )
    from secure_aiaas.llm.pool import ChatModelPool
    from secure_aiaas.llm.registry import ARCHITECTURES, load_causal_lm, register_causal_lm
    from secure_aiaas.llm.sampling import SamplingParams
    from secure_aiaas.llm.service import (
        Generation,
        LLMService,
        Outcome,
        PreparedPrompt,
    )

_LAZY = {
    "BUILTIN_CHAT_MODEL": "secure_aiaas.llm.builtin",
    "ensure_builtin_chat_model": "secure_aiaas.llm.builtin",
    "EngineConfig": "secure_aiaas.llm.config",
    "EngineObserver": "secure_aiaas.llm.engine",
    "Finished": "secure_aiaas.llm.engine",
    "LLMEngine": "secure_aiaas.llm.engine",
    "StepRecord": "secure_aiaas.llm.engine",
    "TokenDelta": "secure_aiaas.llm.engine",
    "ARCHITECTURES": "secure_aiaas.llm.registry",
    "load_causal_lm": "secure_aiaas.llm.registry",
    "register_causal_lm": "secure_aiaas.llm.registry",
    "SamplingParams": "secure_aiaas.llm.sampling",
    "ChatModelPool": "secure_aiaas.llm.pool",
    "Generation": "secure_aiaas.llm.service",
    "LLMService": "secure_aiaas.llm.service",
    "Outcome": "secure_aiaas.llm.service",
    "PreparedPrompt": "secure_aiaas.llm.service",
}

__all__ = [
    "ARCHITECTURES",
    "BUILTIN_CHAT_MODEL",
    "ChatCompletionRequest",
    "ChatModelPool",
    "CompletionRequest",
    "EngineConfig",
    "EngineObserver",
    "Finished",
    "Generation",
    "LLMEngine",
    "LLMService",
    "Outcome",
    "PlaceholderMap",
    "PreparedPrompt",
    "Restorer",
    "SamplingParams",
    "StepRecord",
    "StreamRestorer",
    "TokenDelta",
    "ensure_builtin_chat_model",
    "load_causal_lm",
    "register_causal_lm",
]


def __getattr__(name: str) -> Any:
    # torch/transformers-backed names import on first use: `import secure_aiaas.llm` stays light.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
