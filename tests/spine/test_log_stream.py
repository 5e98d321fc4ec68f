"""The log stream: a loop's lines leave in one write per step, in order; nothing is stranded;
lines from other threads leave at once; payload fields stay masked on the fast renderer."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import threading

import pytest
import structlog

from secure_aiaas.logging import REDACTED, LoopBatchedStream, configure_logging


class Recorded(io.BytesIO):
    """A byte sink that remembers each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.calls.append(bytes(data))
        return super().write(data)


def test_a_loops_lines_leave_together_at_the_end_of_its_step_in_order() -> None:
    raw = Recorded()
    stream = LoopBatchedStream(raw)

    async def step() -> None:
        for n in range(5):
            stream.write(b"line %d\n" % n)
        assert raw.calls == []  # still this step
        await asyncio.sleep(0)  # the step ends: its lines go out
        assert raw.calls == [b"".join(b"line %d\n" % n for n in range(5))]
        stream.write(b"next step\n")

    asyncio.run(step())
    stream.write(b"outside any loop\n")  # at once, after what was pending
    assert raw.getvalue().decode().splitlines() == [
        *(f"line {n}" for n in range(5)),
        "next step",
        "outside any loop",
    ]


def test_a_loop_that_closed_before_its_drain_strands_nothing() -> None:
    raw = Recorded()
    stream = LoopBatchedStream(raw)
    first = asyncio.new_event_loop()

    async def write(text: bytes) -> None:
        stream.write(text)

    first.run_until_complete(write(b"from a loop that closes at once\n"))
    first.close()  # its scheduled drain may never run
    asyncio.run(write(b"from the next loop\n"))
    assert raw.getvalue().decode().splitlines() == [
        "from a loop that closes at once",
        "from the next loop",
    ]


def test_other_threads_write_at_once_and_keep_the_order() -> None:
    raw = Recorded()
    stream = LoopBatchedStream(raw)

    async def main() -> None:
        stream.write(b"loop first\n")
        worker = threading.Thread(target=stream.write, args=(b"thread second\n",))
        worker.start()
        worker.join()
        # The thread's write took the loop's pending line with it, in order.
        assert raw.getvalue() == b"loop first\nthread second\n"

    asyncio.run(main())


def test_a_stderr_that_is_gone_loses_the_lines_and_nothing_else() -> None:
    raw = Recorded()
    stream = LoopBatchedStream(raw)
    raw.close()  # writes now raise ValueError, as a closed pipe raises OSError

    async def main() -> str:
        stream.write(b"lost\n")
        await asyncio.sleep(0)  # the drain ran (and swallowed the error) in this step
        return "still serving"

    assert asyncio.run(main()) == "still serving"
    stream.write(b"lost too, from outside a loop\n")  # no exception into the caller


def test_configured_logging_masks_payloads_and_writes_one_json_line_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Stderr:
        def __init__(self) -> None:
            self.buffer = Recorded()

        def write(self, text: str) -> int:
            return self.buffer.write(text.encode())

        def flush(self) -> None:
            pass

    fake = Stderr()
    monkeypatch.setattr(sys, "stderr", fake)
    try:
        configure_logging("INFO")
        log = structlog.get_logger("test")

        async def main() -> None:
            log.info(
                "request.completed", route="/v1/whoami", prompt="Jane Doe", nested={"text": "x"}
            )
            log.info("big", value_count=2**70)  # past orjson's 64 bits: still a line

        asyncio.run(main())
        logging.getLogger("library").warning("a library's line")
    finally:
        configure_logging("INFO")  # back to the real stderr (drains the test's stream)
    lines = [json.loads(line) for line in fake.buffer.getvalue().decode().splitlines()]
    assert [line["event"] for line in lines] == ["request.completed", "big", "a library's line"]
    assert lines[0]["prompt"] == REDACTED and lines[0]["nested"] == {"text": REDACTED}
    assert "Jane" not in fake.buffer.getvalue().decode()
    assert lines[1]["value_count"] == 2**70
