"""Token ids to text, one token at a time: UTF-8-safe deltas and stop sequences.

Both classes are pure (no torch) and run in the engine thread, once per generated token.

`IncrementalDetokenizer` decodes a short window of recent tokens rather than the whole
answer, and emits nothing while the window ends inside a multi-byte character (the decoder
then yields U+FFFD), so a streamed answer never shows a half character.

`StopMatcher` applies stop sequences to the text, not to token ids: a stop sequence may span
token boundaries, and its text is never emitted. It holds back the longest tail that could
still become a stop sequence and releases it once it cannot (or at the end).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]
_INCOMPLETE = "\ufffd"


class IncrementalDetokenizer:
    """Feed token ids with `push`; each call returns the new text they complete."""

    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # start of the decoding window (context for spacing rules)
        self._read = 0  # tokens before this index have been emitted

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith(_INCOMPLETE):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still pending (an incomplete character shows as U+FFFD)."""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :] if len(after) > len(before) else ""


class StopMatcher:
    """Cuts the text at the first stop sequence; holds back a possible partial one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text that is safe to emit, whether a stop sequence was reached)."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        hits = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return buffer[: min(hits)], True
        keep = self._partial_tail(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """The held-back tail: at the end it can no longer become a stop sequence."""
        held, self._held = self._held, ""
        return held

    def _partial_tail(self, buffer: str) -> int:
        # Longest suffix of `buffer` that is a proper prefix of some stop sequence.
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:size]):
                    best = size
                    break
        return best
