"""The SDK's chat request models (`schemas`) are the chat route's (`llm.wire`), exactly.

The SDK may not import llm/ (STYLE: sdk -> schemas, types, errors, crypto), so the models live
in both places until llm.wire imports them from schemas; until then this test keeps the two
equal: the same JSON schema, the same verdict on the same bodies.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from secure_aiaas import schemas
from secure_aiaas.llm import wire

PAIRS = [(schemas.ChatCompletionRequest, wire.ChatCompletionRequest),
         (schemas.ChatMessage, wire.ChatMessage), (schemas.TextPart, wire.TextPart),
         (schemas.StreamOptions, wire.StreamOptions)]  # fmt: skip
USER = [{"role": "user", "content": "hi"}]
BODIES: list[dict[str, Any]] = [
    {"model": "m", "messages": USER},
    {"model": "m", "messages": USER, "temperature": 0, "top_p": 1, "seed": -5, "stop": "x"},
    {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}},
    {"model": "m", "messages": USER, "stream_options": {"include_usage": True}},
    {"model": "m", "messages": USER, "max_tokens": 3, "max_completion_tokens": 3},
    {"model": "m", "messages": USER, "temperature": "0.5"},
    {"model": "m", "messages": USER, "n": 2},
    {"model": "m", "messages": USER, "logprobs": True},
    {"model": "m", "messages": USER, "tools": []},
    {"model": "M!", "messages": USER},
    {"model": "m", "messages": []},
    {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    {"model": "m", "messages": [{"role": "user", "content": "x", "name": "bob"}]},
    {"model": "m", "messages": USER, "stop": ["a", "b", "c", "d", "e"]},
    {"model": "m", "messages": USER, "seed": 2**63},
    {"model": "m", "messages": USER, "user": "u-1"},
]


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
def test_same_json_schema(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert _schema(ours) == _schema(theirs)


@pytest.mark.parametrize("body", BODIES)
def test_same_verdict(body: dict[str, Any]) -> None:
    def verdict(model: type[BaseModel]) -> object:
        try:
            return model.model_validate(body).model_dump()
        except ValidationError as exc:
            return sorted((tuple(map(str, e["loc"])), e["type"]) for e in exc.errors())

    assert verdict(schemas.ChatCompletionRequest) == verdict(wire.ChatCompletionRequest)


def test_same_helpers() -> None:
    body = {"model": "m", "messages": USER + USER, "stop": ["a"], "max_completion_tokens": 4,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    ours, theirs = (
        m.model_validate(body) for m in (schemas.ChatCompletionRequest, wire.ChatCompletionRequest)
    )
    assert ours.stop_sequences() == theirs.stop_sequences() == ("a",)
    assert ours.token_limit() == theirs.token_limit() == 4
    assert ours.include_usage() is theirs.include_usage() is True
    assert ours.message_texts() == theirs.message_texts() == ["hi", "hi"]
