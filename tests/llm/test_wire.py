"""OpenAI wire format: what requests are accepted or refused, and bodies the openai SDK parses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from secure_aiaas.errors import OverloadedError, RateLimitedError
from secure_aiaas.llm import wire

CHAT = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]}


def chat(**extra: Any) -> wire.ChatCompletionRequest:
    return wire.ChatCompletionRequest.model_validate({**CHAT, **extra})


def refused(**extra: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        chat(**extra)
    return ".".join(str(p) for p in caught.value.errors()[0]["loc"])


def test_accepted_parameters() -> None:
    request = chat(
        max_tokens=5,
        temperature=0,
        top_p=0.5,
        seed=-3,
        stop=["\n", "END"],
        stream=True,
        stream_options={"include_usage": True},
        n=1,
        presence_penalty=1.5,
        frequency_penalty=-1,
        user="someone",
        logprobs=False,
    )
    assert request.token_limit() == 5 and request.stop_sequences() == ("\n", "END")
    assert request.include_usage()
    parts = chat(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ]
    )
    assert parts.message_texts() == ["Be brief.", "ab"]
    assert chat(max_completion_tokens=7).token_limit() == 7


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tools": [{"type": "function"}]}, "tools"),  # features we do not serve ...
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": "x", "name": "Alice"}]}, "messages.0.name"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages.0.content",
        ),
        ({"temperature": "0.5"}, "temperature"),  # ... and strict JSON types
        ({"temperature": 2.5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": "x" * 65}, "stop"),
        ({"stream_options": {"include_usage": True}}, ""),  # only with stream
        ({"max_tokens": 3, "max_completion_tokens": 3}, ""),
        ({"messages": []}, "messages"),
        ({"model": "../etc"}, "model"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_refused_with_the_field_named(extra: dict[str, Any], field: str) -> None:
    assert refused(**extra).startswith(field)


def test_completion_request() -> None:
    request = wire.CompletionRequest.model_validate({"model": "m", "prompt": ["Once"]})
    assert request.prompt_text() == "Once" and request.max_tokens == 16
    for bad in (
        {"prompt": ["a", "b"]},
        {"prompt": [1, 2]},
        {"echo": True},
        {"best_of": 2},
        {"suffix": "x"},
        {"logprobs": 1},
    ):
        with pytest.raises(ValidationError):
            wire.CompletionRequest.model_validate({"model": "m", "prompt": "x", **bad})


COMMON = {"id": "chatcmpl-1", "created": 1, "model": "m", "fingerprint": "m:1"}


def test_bodies_parse_with_the_openai_sdk_types() -> None:
    body = wire.chat_completion_body(
        **COMMON, text="Paris.", finish_reason="stop", prompt_tokens=7, completion_tokens=3
    )
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.content == "Paris." and parsed.usage is not None
    assert parsed.usage.total_tokens == 10
    chunk = ChatCompletionChunk.model_validate(wire.chat_chunk(**COMMON, delta={"content": "Pa"}))
    assert chunk.choices[0].delta.content == "Pa" and chunk.choices[0].finish_reason is None
    usage = ChatCompletionChunk.model_validate(
        wire.usage_chunk(
            **COMMON, object="chat.completion.chunk", prompt_tokens=1, completion_tokens=2
        )
    )
    assert usage.choices == [] and usage.usage is not None
    text = Completion.model_validate(
        wire.completion_body(
            **COMMON, text="upon", finish_reason="length", prompt_tokens=1, completion_tokens=1
        )
    )
    assert text.choices[0].text == "upon"


def test_server_sent_events_framing() -> None:
    event = wire.sse({"a": "é\n"})
    assert event.startswith("data: ") and event.endswith("\n\n")
    assert json.loads(event[len("data: ") :]) == {"a": "é\n"}
    assert "\n" not in event[:-2]  # the payload's newline is escaped inside the JSON
    assert wire.SSE_DONE == "data: [DONE]\n\n"


def test_errors_in_openai_shape_without_internal_detail() -> None:
    body = wire.service_error_body(RateLimitedError(retry_after=3), status=429, request_id="r1")
    assert body == {
        "error": {
            "message": "rate limit exceeded",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        },
        "request_id": "r1",
    }
    overloaded = json.loads(wire.sse_error(OverloadedError(), status=503)[len("data: ") :])
    assert overloaded["error"]["type"] == "server_error"
