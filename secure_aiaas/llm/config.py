"""The chat engines' bounds and defaults: importable without torch (the lifespan reads them
before it knows whether any chat model is registered)."""

from __future__ import annotations

from dataclasses import dataclass

# Tokens a completion may generate when the request does not say.
DEFAULT_MAX_TOKENS = 512


@dataclass(frozen=True)
class EngineConfig:
    """Engine bounds (see `secure_aiaas.llm.engine`'s docstring)."""

    max_batch_size: int = 16
    max_queue_size: int = 64
    max_context_tokens: int = 2048
    max_prefill_tokens: int = 2048
    repetition_penalty: float = 1.1
    retry_after_s: float = 1.0
