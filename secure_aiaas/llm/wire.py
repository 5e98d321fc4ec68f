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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from secure_aiaas.errors import InputError, ServiceError

FinishReason = Literal["stop", "length"]
MAX_STOP = 4
MAX_STOP_CHARS = 64
MAX_MESSAGES = 256
MAX_CONTENT_CHARS = 100_000
MAX_PARTS = 64
SSE_DONE = "data: [DONE]\n\n"
SSE_MEDIA_TYPE = "text/event-stream"
_MODEL_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TextPart(_Strict):
    """One content part; only text is served (no images or audio)."""

    type: Literal["text"]
    text: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: (
        Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]
        | Annotated[list[TextPart], Field(min_length=1, max_length=MAX_PARTS)]
    )

    def text(self) -> str:
        """The content as one string (text parts joined without a separator, as OpenAI does)."""
        return (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )


class StreamOptions(_Strict):
    include_usage: bool = False


Stop = (
    Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
    | Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]],
        Field(max_length=MAX_STOP),
    ]
)


class _Sampling(_Strict):
    """The parameters both endpoints share."""

    model: Annotated[str, Field(pattern=_MODEL_NAME)]
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Annotated[int, Field(ge=-(2**63), lt=2**63)] | None = None
    stop: Stop | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None  # accepted, ignored

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> _Sampling:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed when stream is true")
        return self

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: Literal[False] | None = None

    @model_validator(mode="after")
    def _one_limit(self) -> ChatCompletionRequest:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("max_tokens: give max_tokens or max_completion_tokens, not both")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_tokens is None else self.max_tokens

    def message_texts(self) -> list[str]:
        """Every message's text, in order: what the caller scrubs (as one batch)."""
        return [m.text() for m in self.messages]


class CompletionRequest(_Sampling):
    """``POST /v1/completions`` (one prompt; OpenAI's default of 16 tokens)."""

    prompt: (
        Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]
        | Annotated[
            list[Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]],
            Field(min_length=1, max_length=1),
        ]
    )
    max_tokens: Annotated[int, Field(ge=1)] | None = 16
    echo: Literal[False] = False
    logprobs: None = None
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None
    suffix: None = None

    def prompt_text(self) -> str:
        """The prompt: what the caller scrubs."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


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
