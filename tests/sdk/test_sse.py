"""SSE decoding: the same events however the bytes are cut."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable

import pytest

from secure_aiaas.errors import ServiceError
from secure_aiaas.sdk._sse import LineSplitter, sse_data

STREAM = (
    "\ufeff: a comment\r\n"
    'data: {"delta": "é\u2028ü🙂"}\r\n\r\n'
    "event: ignored\n"
    "id: 7\n"
    "data: first line\n"
    "data:second line\n"
    "retry: 10\n\n"
    "data\r\r"
    "data: [DONE]\n\n"
    "data: unfinished at the end"
)
EVENTS = ['{"delta": "é\u2028ü🙂"}', "first line\nsecond line", "", "[DONE]"]


async def _chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def decode(parts: Iterable[bytes]) -> list[str]:
    async def main() -> list[str]:
        return [event async for event in sse_data(_chunks(parts))]

    return asyncio.run(main())


def test_whole_stream() -> None:
    assert decode([STREAM.encode()]) == EVENTS


def test_one_byte_at_a_time_splits_utf8_and_crlf() -> None:
    data = STREAM.encode()
    assert decode(data[i : i + 1] for i in range(len(data))) == EVENTS


@pytest.mark.parametrize("seed", range(20))
def test_random_cuts(seed: int) -> None:
    data = STREAM.encode()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 30)))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert decode(parts) == EVENTS


def test_cr_then_lf_in_the_next_chunk_is_one_line_end() -> None:
    assert decode([b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n"]) == ["a", "b"]


def test_lone_crs_end_lines() -> None:
    assert decode([b"data: a\r\rdata: b\r\r"]) == ["a", "b"]


def test_u2028_is_not_a_line_end() -> None:
    splitter = LineSplitter()
    assert splitter.feed("data: x\u2028y\u0085z\n") == ["data: x\u2028y\u0085z"]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode([b"data: \xff\xfe ok\n\n"]) == ["\ufffd\ufffd ok"]


def test_an_endless_line_is_refused() -> None:
    splitter = LineSplitter(max_line_chars=1000)
    with pytest.raises(ServiceError) as caught:
        for _ in range(200):
            splitter.feed("x" * 10)
    assert caught.value.code == "invalid_response"


def test_many_small_chunks_of_one_long_line_cost_linear_work() -> None:
    # Each feed touches only its own text: 100k one-character feeds finish with one line.
    splitter = LineSplitter()
    for _ in range(100_000):
        assert splitter.feed("x") == []
    assert splitter.feed("\n") == ["x" * 100_000]
