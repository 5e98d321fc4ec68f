"""Incremental detokenization and stop sequences (pure, no model)."""

from __future__ import annotations

import itertools

import pytest

from secure_aiaas.llm.text import IncrementalDetokenizer, StopMatcher
from tests.llm.tiny import byte_tokenizer

TOKENIZER = byte_tokenizer()


def decode(ids: object) -> str:
    return str(TOKENIZER.decode(list(ids), skip_special_tokens=True))  # type: ignore[call-overload]


@pytest.mark.parametrize("text", ["plain ascii", "Zürich, 東京, emoji 🎉 and ünïcode", "a\u200bb"])
def test_deltas_never_split_a_character_and_join_to_the_text(text: str) -> None:
    detokenizer = IncrementalDetokenizer(decode)
    deltas = [detokenizer.push(t) for t in TOKENIZER.encode(text).ids]
    deltas.append(detokenizer.flush())
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    assert "" in deltas or text.isascii()  # multi-byte characters wait for their last byte


def test_an_incomplete_character_at_the_end_shows_as_replacement() -> None:
    detokenizer = IncrementalDetokenizer(decode)
    first_byte_of_euro = TOKENIZER.encode("€").ids[0]
    assert detokenizer.push(first_byte_of_euro) == ""
    assert detokenizer.flush() == "\ufffd"


def feed(matcher: StopMatcher, chunks: list[str]) -> tuple[str, bool]:
    out = []
    for chunk in chunks:
        text, stopped = matcher.push(chunk)
        out.append(text)
        if stopped:
            return "".join(out), True
    out.append(matcher.flush())
    return "".join(out), False


@pytest.mark.parametrize(
    ("text", "stops", "expected", "stopped"),
    [
        ("Hello world. Bye", ["."], "Hello world", True),
        ("abc STOP def", ["STOP"], "abc ", True),
        ("abc ST", ["STOP"], "abc ST", False),  # a partial stop at the end is released
        ("x END y STOP", ["STOP", "END"], "x ", True),  # the earliest occurrence wins
        ("aaab", ["aab"], "a", True),  # overlapping prefixes
        ("no stops here", [], "no stops here", False),
    ],
)
def test_stop_sequences_in_every_chunking(
    text: str, stops: list[str], expected: str, stopped: bool
) -> None:
    # Every way of cutting the text into three chunks gives the same answer.
    for i, j in itertools.combinations(range(len(text) + 1), 2):
        chunks = [text[:i], text[i:j], text[j:]]
        assert feed(StopMatcher(stops), chunks) == (expected, stopped), chunks


def test_held_back_text_is_only_a_possible_stop_prefix() -> None:
    matcher = StopMatcher(["</answer>"])
    assert matcher.push("The result </ans") == ("The result ", False)
    assert matcher.push("wer is") == ("</answer is", False)
