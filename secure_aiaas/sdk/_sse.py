"""Server-sent events decoded from byte chunks, as the WHATWG HTML standard frames them.

Chunks split anywhere: inside a UTF-8 sequence, between the CR and LF of a line end, inside a
field name. Lines end at CR, LF or CRLF only (never at U+2028, which a JSON string may hold
unescaped); ``data:`` lines of one event are joined with LF; comments (``:``) and the other
fields are skipped; an event is dispatched at its blank line, and an unfinished one at the end
of the stream is dropped. Linear in the stream's length; one line is bounded.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncGenerator, AsyncIterable

from secure_aiaas.sdk._errors import invalid_response

MAX_LINE_CHARS = 4 << 20
_EOL = re.compile(r"\r\n|\r|\n")


class LineSplitter:
    """Incremental CR / LF / CRLF line splitting over decoded text."""

    def __init__(self, max_line_chars: int = MAX_LINE_CHARS) -> None:
        self._parts: list[str] = []
        self._pending = 0
        self._after_cr = False  # the last text ended in CR: a leading LF belongs to it
        self._max = max_line_chars

    def feed(self, text: str) -> list[str]:
        start = 1 if self._after_cr and text.startswith("\n") else 0
        if text:
            self._after_cr = False
        lines = []
        for match in _EOL.finditer(text, start):
            self._parts.append(text[start : match.start()])
            lines.append("".join(self._parts))
            self._parts, self._pending = [], 0
            start = match.end()
            self._after_cr = match.group() == "\r" and start == len(text)
        if start < len(text):
            self._parts.append(text[start:])
            self._pending += len(text) - start
            if self._pending > self._max:
                raise invalid_response("a server-sent event line is too long")
        return lines


async def sse_data(chunks: AsyncIterable[bytes]) -> AsyncGenerator[str, None]:
    """The ``data`` of each event in a ``text/event-stream`` body."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    splitter = LineSplitter()
    data: list[str] = []
    first = True
    async for chunk in chunks:
        text = decoder.decode(chunk)
        if first and text:
            text, first = text.removeprefix("\ufeff"), False
        for line in splitter.feed(text):
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
                continue
            name, colon, value = line.partition(":")
            if not name:
                continue  # a comment (keep-alive)
            if name == "data":
                data.append(value.removeprefix(" ") if colon else "")
