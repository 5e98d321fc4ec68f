"""Put a request's original values back in place of the placeholders in a model's answer.

The scrubber replaced personal data with typed placeholders (``<PERSON_1>``) before the model
saw the prompt. For a tenant whose profile asks for it, the answer's placeholders are restored
to that request's values before the answer leaves the service. The mapping comes from the
caller for one request and lives only as long as it: `PlaceholderMap` never shows a value in
``repr``/``str``, and nothing here logs or stores one.

What is matched, for a placeholder ``<TYPE_N>`` (``TYPE`` words joined by ``_``):

* the core ``TYPE_N`` in any case, with ``_`` or a markdown-escaped ``\\_`` between the parts,
  and the separator before ``N`` optional: ``PERSON_1``, ``person_1``, ``Person1``,
  ``EMAIL\\_ADDRESS\\_1``;
* in capitals only, spaces or hyphens as separators: ``PERSON 1``, ``EMAIL ADDRESS-1``
  (lower-case "person 1" is ordinary prose and is left alone);
* never inside a longer word or number: ``PERSON_1`` does not match in ``PERSON_12``;
* balanced wrappers around the core are consumed with it: ``<…>``, ``[…]``, ``{…}``,
  ``**…**``, ``*…*``, ``__…__``, ``_…_``, `` `…` `` (nested up to three deep, e.g.
  ``**<PERSON_1>**``), plus a lone ``<`` or ``>`` left by the model; parentheses are not.

A placeholder that is not in the mapping (one the model invented) stays as it is. A key that
does not look like ``<TYPE_N>`` is matched exactly. `StreamRestorer` does the same over a
stream of chunks: it holds back a tail that could still grow into a placeholder (or its
closing wrapper) and releases it once the next chunk decides, or at `flush`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping

_KEY = re.compile(r"^<?([A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*?)_([0-9]+)>?$")
_PAIRS = (("**", "**"), ("__", "__"), ("<", ">"), ("[", "]"), ("{", "}"),
          ("*", "*"), ("_", "_"), ("`", "`"))  # fmt: skip
_OPENERS = frozenset("<[{*_`")
_CLOSERS = frozenset(">]}*_`")
_CORE_CHARS = frozenset("_ -\\")
_MAX_WRAP = 3


class PlaceholderMap:
    """Placeholder -> original value for one request (values are never shown)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = {str(k): str(v) for k, v in values.items() if k}

    def __repr__(self) -> str:
        return f"PlaceholderMap({len(self._values)} placeholders)"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._values)

    def placeholders(self) -> list[str]:
        """The placeholders (not personal data), sorted."""
        return sorted(self._values)

    def _items(self) -> Iterator[tuple[str, str]]:
        return iter(self._values.items())


def _entity_type(placeholder: str) -> str:
    match = _KEY.match(placeholder)
    return match.group(1).upper() if match else "OTHER"


def _normal(text: str) -> str:
    return "".join(c for c in text if c.isalnum()).upper()


class Restorer:
    """Restores the placeholders of one `PlaceholderMap` in text."""

    def __init__(self, mapping: PlaceholderMap) -> None:
        self._values: dict[str, tuple[str, str]] = {}  # normal form -> (value, entity type)
        self._exact: dict[str, tuple[str, str]] = {}  # keys matched literally
        alternatives: list[str] = []
        for key, value in mapping._items():
            parsed = _KEY.match(key)
            if parsed is None:
                self._exact[key] = (value, "OTHER")
                continue
            words, number = parsed.group(1).split("_"), parsed.group(2)
            underscored = r"(?:_|\\_)".join(map(re.escape, words)) + r"(?:_|\\_)?" + number
            capitals = r"[ -]".join(re.escape(w.upper()) for w in words) + r"[ -]?" + number
            alternatives.append(f"(?i:{underscored})|{capitals}")
            self._values.setdefault(_normal(key), (value, parsed.group(1).upper()))
        alternatives += [re.escape(k) for k in sorted(self._exact, key=len, reverse=True)]
        self._pattern = (
            re.compile("(?<![A-Za-z0-9])(?:" + "|".join(alternatives) + ")(?![A-Za-z0-9])")
            if alternatives else None
        )  # fmt: skip
        self.cores = frozenset(self._values)  # normal forms, for the stream's hold-back
        self.longest = max((len(k) for k, _ in mapping._items()), default=0)
        self.counts: Counter[str] = Counter()  # restored placeholders by entity type

    def restore(self, text: str) -> str:
        """`text` with every matched placeholder replaced by its value."""
        if self._pattern is None or not text:
            return text
        out: list[str] = []
        done = 0
        for match in self._pattern.finditer(text):
            found = self._exact.get(match.group()) or self._values.get(_normal(match.group()))
            if found is None:
                continue
            start, end = _consume_wrappers(text, match.start(), match.end(), floor=done)
            out.append(text[done:start])
            out.append(found[0])
            self.counts[found[1]] += 1
            done = end
        out.append(text[done:])
        return "".join(out)

    def stream(self) -> StreamRestorer:
        """A restorer for one streamed answer."""
        return StreamRestorer(self)


def _consume_wrappers(text: str, start: int, end: int, *, floor: int) -> tuple[int, int]:
    for _ in range(_MAX_WRAP):
        for left, right in _PAIRS:
            if (start - len(left) >= floor and text.startswith(left, start - len(left))
                    and text.startswith(right, end)):
                start, end = start - len(left), end + len(right)
                break
        else:
            break
    if start > floor and text[start - 1] == "<":
        start -= 1
    if end < len(text) and text[end] == ">":
        end += 1
    return start, end


class StreamRestorer:
    """`push` chunks of one answer, get restored text; `flush` at the end."""

    def __init__(self, restorer: Restorer) -> None:
        self._restorer = restorer
        self._held = ""
        # Far enough back to hold a whole placeholder spelled with escapes and wrappers.
        self._window = 2 * restorer.longest + 4 * _MAX_WRAP + 2

    @property
    def counts(self) -> Counter[str]:
        return self._restorer.counts

    def push(self, chunk: str) -> str:
        buffer = self._held + chunk
        cut = self._safe_cut(buffer)
        self._held = buffer[cut:]
        return self._restorer.restore(buffer[:cut])

    def flush(self) -> str:
        held, self._held = self._held, ""
        return self._restorer.restore(held)

    def _safe_cut(self, buffer: str) -> int:
        if not self._restorer.cores and self._restorer._pattern is None:
            return len(buffer)
        for i in range(max(0, len(buffer) - self._window), len(buffer)):
            c = buffer[i]
            starts_word = c.isalnum() and (i == 0 or not buffer[i - 1].isalnum())
            if (c in _OPENERS or starts_word) and self._could_grow(buffer[i:]):
                return i
        return len(buffer)

    def _could_grow(self, tail: str) -> bool:
        """Whether `tail` (the end of the text so far) may still become a placeholder."""
        i = 0
        while i < len(tail) and i < 2 * _MAX_WRAP and tail[i] in _OPENERS:
            i += 1
        j = i
        while j < len(tail) and (tail[j].isalnum() or tail[j] in _CORE_CHARS):
            j += 1
        if any(c not in _CLOSERS for c in tail[j:]):
            return False  # something else follows: the next chunk cannot change this part
        core = _normal(tail[i:j])
        if not core:
            return j == len(tail)  # only openers so far
        if core in self._restorer.cores:
            return True  # complete, but a digit or a closing wrapper may still follow
        if j < len(tail):
            return False
        exact = self._restorer._exact
        return any(c.startswith(core) for c in self._restorer.cores) or any(
            _normal(k).startswith(core) for k in exact
        )
