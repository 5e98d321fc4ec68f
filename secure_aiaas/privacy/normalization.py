"""Fold text for detection, and map the folded offsets back to the original text.

A card number with zero-width spaces between its groups, an e-mail address with a fullwidth
``＠`` or a phone number with a word joiner reads as the real value to a person and to a model's
tokenizer, but not to a regex. Detection therefore runs on a folded copy:

- format characters (category Cf: zero-width space/joiners, word joiner, bidi controls, soft
  hyphen, BOM) are dropped;
- each character cluster (a base character and its combining marks) is NFKC-normalised:
  fullwidth forms, ligatures, compatibility digits and odd spaces become their plain forms;
- letters that look Latin but are Cyrillic or Greek (``а`` for ``a``) are folded to Latin inside
  words that also hold Latin letters, the mixed-script trick; all-Cyrillic words stay as they are;
- dashes and slashes of other blocks fold to ``-`` and ``/``.

Spans found on the folded text are mapped back with ``Folded.to_original`` so the original text is
transformed: a span always covers whole original characters, including dropped ones inside it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Cyrillic and Greek letters that render like Latin ones (Unicode confusables, the common subset).
_CONFUSABLE_LETTERS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "ԛ": "q",
    "ԝ": "w", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S", "α": "a", "ο": "o",
    "ν": "v", "ρ": "p", "τ": "t", "υ": "u", "ι": "i", "κ": "k", "Α": "A", "Β": "B", "Ε": "E",
    "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T",
    "Υ": "Y", "Χ": "X",
})  # fmt: skip
_SYMBOLS = str.maketrans({
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-", "⁃": "-", "﹣": "-",
    "∕": "/", "⁄": "/", "⧸": "/", "․": ".", "·": ".", "｡": ".",
})  # fmt: skip
_CONFUSABLE_KEYS = frozenset(chr(c) for c in _CONFUSABLE_LETTERS)


@dataclass(frozen=True)
class Folded:
    """The folded text and, per folded character, the original span it came from."""

    original: str
    text: str
    starts: tuple[int, ...] | None  # None: identical to the original
    ends: tuple[int, ...] | None

    @property
    def identity(self) -> bool:
        """True when folding changed nothing (offsets are the original ones)."""
        return self.starts is None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Original offsets of the folded span ``[start, end)`` (whole original characters)."""
        if self.starts is None or self.ends is None:
            return start, end
        if end <= start:
            pos = self.starts[start] if start < len(self.starts) else len(self.original)
            return pos, pos
        return self.starts[start], self.ends[end - 1]


def fold(text: str) -> Folded:
    """Fold ``text`` for detection (see the module docstring); cheap for plain ASCII."""
    if text.isascii():
        return Folded(text, text, None, None)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if unicodedata.category(ch) == "Cf":
            i += 1
            continue
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        cluster = text[i:j]
        folded = unicodedata.normalize("NFKC", cluster).translate(_SYMBOLS)
        for c in folded:
            if unicodedata.category(c) == "Cf":
                continue
            out.append(c)
            starts.append(i)
            ends.append(j)
        i = j
    folded_text = _fold_mixed_script("".join(out))
    if folded_text == text:
        return Folded(text, text, None, None)
    return Folded(text, folded_text, tuple(starts), tuple(ends))


def _fold_mixed_script(text: str) -> str:
    """Fold confusable letters inside words that also contain ASCII Latin letters."""
    if not any(c in _CONFUSABLE_KEYS for c in text):
        return text
    chars = list(text)
    i, n = 0, len(chars)
    while i < n:
        if not chars[i].isalnum():
            i += 1
            continue
        j = i
        while j < n and (chars[j].isalnum() or chars[j] in "@.-_+"):
            j += 1
        word = "".join(chars[i:j])
        if any("a" <= c.lower() <= "z" for c in word) and any(c in _CONFUSABLE_KEYS for c in word):
            chars[i:j] = list(word.translate(_CONFUSABLE_LETTERS))
        i = j
    return "".join(chars)
