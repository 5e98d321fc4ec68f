"""Property-based tests (hypothesis) of every recognizer and of folding.

For any text: a recognizer never raises, its spans lie within the text and are non-empty;
spans found on the folded text map back inside the original; folding is idempotent; and a
pattern recognizer finds nothing in text whose findings were already redacted.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_aiaas.privacy import Scrubber
from secure_aiaas.privacy.normalization import fold

# Text that reaches the interesting paths: PII-shaped pieces, separators, odd Unicode.
PIECES = st.sampled_from(
    [
        "Dear ",
        "my name is ",
        "Maria",
        "lópez",
        " ",
        "\n",
        "\u200b",
        "\u2060",
        "＠",
        "@",
        ".",
        "example.com",
        "+44 ",
        "7700",
        "900123",
        "4111",
        "-",
        "DE89",
        "3704",
        "0044",
        "Apt. ",
        "221",
        "Baker Street",
        "e\u0301",
        "а",
        "name=",
        "%40",
        "1984-03-12",
        "192.168.",
        "0.1",
        ":",
        "(",
        ")",
        "’s",
    ]
)
TEXTS = st.one_of(
    st.text(max_size=200),
    st.lists(PIECES, max_size=30).map("".join),
)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
PATTERN_TYPES = {"EMAIL_ADDRESS", "IBAN_CODE", "CREDIT_CARD", "US_SSN", "IP_ADDRESS"}


def _recognizers(scrubber: Scrubber) -> list[object]:
    assert scrubber._detector is not None
    return list(scrubber._detector.analyzer.registry.recognizers)


@SETTINGS
@given(text=TEXTS)
def test_recognizers_never_crash_and_stay_in_bounds(scrubber: Scrubber, text: str) -> None:
    assert scrubber._detector is not None
    doc = scrubber._detector.nlp(text)
    artifacts = scrubber._detector.engine.artifacts(doc)
    for r in _recognizers(scrubber):
        for res in r.analyze(text, r.supported_entities, artifacts):  # type: ignore[attr-defined]
            assert 0 <= res.start < res.end <= len(text), r.name  # type: ignore[attr-defined]


@SETTINGS
@given(text=TEXTS)
def test_detected_spans_lie_within_the_original_text(scrubber: Scrubber, text: str) -> None:
    for span in scrubber.detect([text], tenant="t")[0]:
        assert 0 <= span.start < span.end <= len(text)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS)
def test_folding_maps_back_and_is_idempotent(text: str) -> None:
    f = fold(text)
    assert fold(f.text).text == f.text
    previous_end = 0
    for i in range(len(f.text)):
        start, end = f.to_original(i, i + 1)
        assert 0 <= start < end <= len(text) and start >= previous_end - (end - start)
        previous_end = end


@SETTINGS
@given(text=TEXTS)
def test_pattern_recognizers_are_idempotent_after_redaction(scrubber: Scrubber, text: str) -> None:
    for r in _recognizers(scrubber):
        types = set(r.supported_entities) & PATTERN_TYPES  # type: ignore[attr-defined]
        if not types:
            continue
        results = sorted(r.analyze(text, list(types), None), key=lambda x: x.start)  # type: ignore[attr-defined]
        redacted, cursor = [], 0
        for res in results:
            if res.start >= cursor:
                redacted.append(text[cursor : res.start] + f"<{res.entity_type}>")
                cursor = res.end
        redacted.append(text[cursor:])
        again = r.analyze("".join(redacted), list(types), None)  # type: ignore[attr-defined]
        assert [x for x in again if x.score >= 0.5] == [], r.name  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["", " ", "\u200b", "@", "a" * 3, "é\u0301\u0301"])
def test_degenerate_inputs(scrubber: Scrubber, text: str) -> None:
    result = scrubber.scrub_text(text, tenant="t")
    assert isinstance(result.text, str)
