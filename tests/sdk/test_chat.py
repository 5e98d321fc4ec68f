"""`Client.chat` / `AsyncClient.chat` over real HTTP against the stand-in chat route.

The stand-in validates bodies with `llm.wire.ChatCompletionRequest` (the real route's model)
and frames replies with `llm.wire`, cut into 1-7 byte pieces with CRLF line ends.
"""

from __future__ import annotations

import asyncio

import pytest

from secure_aiaas.errors import InputError, OverloadedError, RateLimitedError, ServiceError
from secure_aiaas.schemas import ChatMessage, TextPart
from secure_aiaas.sdk import AsyncChatStream, AsyncClient, ChatStream, Client, RetryPolicy
from secure_aiaas.testing import ANSWER_SUFFIX, API_KEY, Refusal
from tests.sdk.conftest import StandIn

HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Grüß dich"}]
EXPECTED = "Écho: Grüß dich" + ANSWER_SUFFIX


def test_completion(standin: StandIn) -> None:
    with Client(standin.url, API_KEY) as client:
        completion = client.chat("echo", HELLO, temperature=0, seed=7, top_p=0.5)
    assert completion.text == EXPECTED
    assert completion.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    sent = standin.script.chat_bodies[0]
    assert sent == {"model": "echo", "messages": HELLO, "temperature": 0.0, "seed": 7,
                    "top_p": 0.5}  # only what was given  # fmt: skip


def test_max_tokens_and_stop(standin: StandIn) -> None:
    with Client(standin.url, API_KEY) as client:
        short = client.chat("echo", HELLO, max_tokens=2)
        stopped = client.chat("echo", HELLO, stop=["dich"])
        stopped_tuple = client.chat("echo", HELLO, stop=("dich", "zz"))
    assert short.text == EXPECTED[:6] and short.finish_reason == "length"
    assert stopped.text == "Écho: Grüß " == stopped_tuple.text


def test_stream_sync(standin: StandIn) -> None:
    with Client(standin.url, API_KEY) as client:
        stream = client.chat("echo", HELLO, stream=True)
        assert isinstance(stream, ChatStream)
        deltas = list(stream)
    assert "".join(deltas) == EXPECTED == stream.text
    assert len(deltas) > 3 and all(deltas)  # role-only and empty chunks are not deltas
    assert stream.finish_reason == "stop"
    assert stream.usage is not None and stream.usage.completion_tokens == len(deltas)
    sent = standin.script.chat_bodies[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_stream_async_with_message_models(standin: StandIn) -> None:
    parts = [TextPart(type="text", text="Grüß "), TextPart(type="text", text="dich")]
    messages = [ChatMessage(role="user", content=parts)]

    async def main() -> tuple[list[str], AsyncChatStream]:
        async with AsyncClient(standin.url, API_KEY) as client:
            stream = await client.chat("echo", messages, stream=True, max_tokens=3)
            async with stream:
                return [d async for d in stream], stream

    deltas, stream = asyncio.run(main())
    assert "".join(deltas) == EXPECTED[:9] and stream.finish_reason == "length"


def test_refused_before_sending(standin: StandIn) -> None:
    with Client(standin.url, API_KEY) as client:
        for bad in ({"temperature": 5.0}, {"max_tokens": 0}, {"stop": ["a"] * 5}):
            with pytest.raises(InputError):
                client.chat("echo", HELLO, **bad)  # type: ignore[arg-type]
        with pytest.raises(InputError) as caught:
            client.chat("echo", [{"role": "tool", "content": "Jane Doe, 4111 1111 1111 1111"}])
        with pytest.raises(InputError):
            client.chat("echo", [])
    assert "messages[0].role" in caught.value.public_message
    assert "Jane" not in caught.value.public_message
    assert standin.script.hits("/v1/chat/completions") == 0


def test_errors_before_the_stream_are_raised_by_the_call(standin: StandIn) -> None:
    refusal = Refusal(429, {"Retry-After": "0"}, "rate_limited")
    standin.script.refuse("/v1/chat/completions", refusal)
    with Client(standin.url, API_KEY, retry=RetryPolicy(attempts=1)) as client, \
            pytest.raises(RateLimitedError):  # fmt: skip
        client.chat("echo", HELLO, stream=True)


def test_stream_opening_is_retried(standin: StandIn) -> None:
    standin.script.refuse("/v1/chat/completions", Refusal(503, {"Retry-After": "0"}))
    with Client(standin.url, API_KEY) as client:
        assert "".join(client.chat("echo", HELLO, stream=True)) == EXPECTED
    assert standin.script.hits("/v1/chat/completions") == 2


def test_an_error_event_mid_stream_raises_its_error(standin: StandIn) -> None:
    with Client(standin.url, API_KEY) as client:
        stream = client.chat("fail-mid", HELLO, stream=True)
        got = []
        with pytest.raises(OverloadedError):
            for delta in stream:
                got.append(delta)
    assert got and "".join(got) == stream.text


def test_a_stream_cut_short_is_an_error_not_an_answer(standin: StandIn) -> None:
    with Client(standin.url, API_KEY) as client, pytest.raises(ServiceError) as caught:
        list(client.chat("cut", HELLO, stream=True))
    assert caught.value.code == "invalid_response"


def test_leaving_a_stream_early_closes_it(standin: StandIn) -> None:
    with Client(standin.url, API_KEY) as client:
        with client.chat("slow", HELLO, stream=True) as stream:
            assert next(stream) == "."
        for _ in range(200):  # the server notices the closed connection
            if standin.script.streams_closed:
                break
            asyncio.run(asyncio.sleep(0.02))
        assert client.whoami()["tenant"] == "acme"  # the client is still usable
    assert standin.script.streams_closed == 1
