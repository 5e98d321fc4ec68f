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


_WORD = "[A-Za-z]+"
_SEPARATOR = r"(?:\\_|[_ -])"


class Restorer:
    """Restores the placeholders of one `PlaceholderMap` in text.

    One generic pattern finds placeholder-shaped words followed by a number (bounded
    repetition: linear in the text, whatever the number of placeholders); a dictionary of
    normal forms (letters and digits, upper case) then decides which are ours.
    """

    def __init__(self, mapping: PlaceholderMap) -> None:
        self._values: dict[str, tuple[str, str]] = {}  # normal form -> (value, entity type)
        self._exact: dict[str, tuple[str, str]] = {}  # keys matched literally
        words = 1
        for key, value in mapping._items():
            parsed = _KEY.match(key)
            if parsed is None or not all(w.isalpha() for w in parsed.group(1).split("_")):
                self._exact[key] = (value, _entity_type(key))
                continue
            words = max(words, parsed.group(1).count("_") + 1)
            self._values.setdefault(_normal(key), (value, parsed.group(1).upper()))
        self._pattern = re.compile(
            rf"(?<![A-Za-z0-9]){_WORD}(?:{_SEPARATOR}{_WORD}){{0,{words}}}{_SEPARATOR}?[0-9]+"
            r"(?![A-Za-z0-9])"
        )
        self._literal = (
            re.compile("|".join(re.escape(k) for k in sorted(self._exact, key=len, reverse=True)))
            if self._exact else None
        )  # fmt: skip
        self.prefixes = frozenset(
            core[:i] for core in [*self._values, *map(_normal, self._exact)]
            for i in range(1, len(core) + 1)
        )  # fmt: skip
        self.cores = frozenset(self._values)
        self.longest = max((len(k) for k, _ in mapping._items()), default=0)
        self.counts: Counter[str] = Counter()  # restored placeholders by entity type

    @property
    def empty(self) -> bool:
        return not self._values and not self._exact

    def restore(self, text: str) -> str:
        """`text` with every matched placeholder replaced by its value."""
        if self.empty or not text:
            return text
        spans = sorted(self._find(text))
        out: list[str] = []
        done = 0
        for start, end, value, entity in spans:
            if start < done:
                continue  # overlaps one already replaced
            start, end = _consume_wrappers(text, start, end, floor=done)
            out.append(text[done:start])
            out.append(value)
            self.counts[entity] += 1
            done = end
        out.append(text[done:])
        return "".join(out)

    def _find(self, text: str) -> Iterator[tuple[int, int, str, str]]:
        if self._values:
            for match in self._pattern.finditer(text):
                found = self._ours(match.group(), match.start())
                if found is not None:
                    yield found
        if self._literal is not None:
            for match in self._literal.finditer(text):
                value, entity = self._exact[match.group()]
                yield match.start(), match.end(), value, entity

    def _ours(self, core: str, offset: int) -> tuple[int, int, str, str] | None:
        # The match may begin with prose words ("about PERSON_1"): try each later word start.
        for word in re.finditer(_WORD, core):
            candidate = core[word.start() :]
            found = self._values.get(_normal(candidate))
            if found is None:
                continue
            spaced = any(c in " -" for c in candidate)
            letters = "".join(c for c in candidate if c.isalpha())
            if spaced and not letters.isupper():
                return None  # "person 1" is prose; "PERSON 1" is a placeholder
            return offset + word.start(), offset + len(core), found[0], found[1]
        return None

    def stream(self) -> StreamRestorer:
        """A restorer for one streamed answer."""
        return StreamRestorer(self)


def _consume_wrappers(text: str, start: int, end: int, *, floor: int) -> tuple[int, int]:
    for _ in range(_MAX_WRAP):
        for left, right in _PAIRS:
            if (
                start - len(left) >= floor
                and text.startswith(left, start - len(left))
                and text.startswith(right, end)
            ):
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
        if self._restorer.empty:
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
        return j == len(tail) and core in self._restorer.prefixes
