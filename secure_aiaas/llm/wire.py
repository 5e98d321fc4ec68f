"""OpenAI-compatible wire format: request models, response and chunk bodies, SSE framing, errors.

Requests are declared pydantic models (strict JSON types, so ``"0.5"`` is not a temperature).
Fields are refused rather than silently ignored when we do not implement them: an unknown
field, or a documented OpenAI feature we do not serve (tools, ``n`` > 1, logprobs, JSON mode,
images, ``name`` on a message), is a 422 naming the field, so a client never believes it got a
feature it did not. ``user`` is accepted and ignored (never stored, never logged).

Streamed bodies are server-sent events, one ``data: {json}`` per chunk, ending in
``data: [DONE]``. Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``;
the HTTP status comes from the caller (``api/errors.py`` is where status codes live).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from secure_aiaas.errors import InputError, ServiceError

# The request models live in `schemas` (the SDK builds the same bodies and may not import
# llm/); the chat routes validate with exactly these classes.
from secure_aiaas.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    Sampling,
    StreamOptions,
    TextPart,
)

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "Sampling",
    "StreamOptions",
    "TextPart",
]

FinishReason = Literal["stop", "length"]
SSE_DONE = "data: [DONE]\n\n"
SSE_MEDIA_TYPE = "text/event-stream"


# -- responses -----------------------------------------------------------------------------


def new_id(kind: Literal["chatcmpl", "cmpl"]) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


def chat_completion_body(
    *, id: str, created: int, model: str, fingerprint: str, text: str,
    finish_reason: FinishReason, prompt_tokens: int, completion_tokens: int,
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": fingerprint,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage_body(prompt_tokens, completion_tokens),
    }  # fmt: skip


def chat_chunk(
    *, id: str, created: int, model: str, fingerprint: str, delta: dict[str, str],
    finish_reason: FinishReason | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "system_fingerprint": fingerprint,
        "choices": [{"index": 0, "delta": delta, "logprobs": None,
                     "finish_reason": finish_reason}],
    }  # fmt: skip


def completion_body(
    *, id: str, created: int, model: str, fingerprint: str, text: str,
    finish_reason: FinishReason, prompt_tokens: int, completion_tokens: int,
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": id, "object": "text_completion", "created": created, "model": model,
        "system_fingerprint": fingerprint,
        "choices": [{"index": 0, "text": text, "logprobs": None,
                     "finish_reason": finish_reason}],
        "usage": usage_body(prompt_tokens, completion_tokens),
    }  # fmt: skip


def completion_chunk(
    *, id: str, created: int, model: str, fingerprint: str, text: str,
    finish_reason: FinishReason | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": id, "object": "text_completion", "created": created, "model": model,
        "system_fingerprint": fingerprint,
        "choices": [{"index": 0, "text": text, "logprobs": None,
                     "finish_reason": finish_reason}],
    }  # fmt: skip


def usage_chunk(
    *, id: str, created: int, model: str, fingerprint: str, object: str,
    prompt_tokens: int, completion_tokens: int,
) -> dict[str, Any]:  # fmt: skip
    """The last chunk when ``stream_options.include_usage``: no choices, only usage."""
    return {"id": id, "object": object, "created": created, "model": model,
            "system_fingerprint": fingerprint, "choices": [],
            "usage": usage_body(prompt_tokens, completion_tokens)}  # fmt: skip


def model_card(name: str, version: str, created: int) -> dict[str, Any]:
    """One ``GET /v1/models`` entry."""
    return {"id": name, "object": "model", "created": created, "owned_by": "secure_aiaas",
            "version": version, "task": "text-generation"}  # fmt: skip


# -- framing and errors --------------------------------------------------------------------


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying `payload` as compact JSON."""
    return "data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False) + "\n\n"


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "invalid_request_error",
                422: "invalid_request_error", 429: "rate_limit_error"}  # fmt: skip


def error_body(
    message: str, *, code: str, status: int, param: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """OpenAI's error shape (the openai client raises the matching ``APIStatusError``)."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": param,
                                      "code": code}}  # fmt: skip
    if request_id is not None:
        body["request_id"] = request_id
    return body


def service_error_body(
    exc: ServiceError, *, status: int, request_id: str | None = None
) -> dict[str, Any]:
    """`error_body` for one of our errors: its public message and code only."""
    param = getattr(exc, "param", None)
    return error_body(
        exc.public_message,
        code=exc.code,
        status=status,
        param=param if isinstance(param, str) else None,
        request_id=request_id,
    )


def sse_error(exc: ServiceError, *, status: int = 500) -> str:
    """An error after the stream started (the openai client raises on an ``error`` event)."""
    return sse(service_error_body(exc, status=status))


class UnsupportedModelFeature(InputError):
    """A request the model cannot serve (e.g. chat on a model without a chat template)."""

    code = "unsupported_model_feature"
