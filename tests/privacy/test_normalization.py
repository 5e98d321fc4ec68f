"""Unicode cannot hide personal data: every type × {zero-width, joiner, fullwidth, mixed}."""

from __future__ import annotations

import pytest

from secure_aiaas.privacy import Scrubber
from secure_aiaas.privacy.normalization import fold

ZWSP, WJ, ZWJ = "\u200b", "\u2060", "\u200d"
# type -> (sentence with {} for the value, the value)
VALUES = {
    "EMAIL_ADDRESS": ("write to {} today", "kari.nordmann@example.no"),
    "PHONE_NUMBER": ("call {} please", "+44 7700 900123"),
    "CREDIT_CARD": ("card {} declined", "4111 1111 1111 1111"),
    "IBAN_CODE": ("iban {} ok", "DE89 3704 0044 0532 0130 00"),
    "US_SSN": ("ssn {} on file", "219-09-9999"),
    "IP_ADDRESS": ("from {} blocked", "203.0.113.45"),
    "PERSON": ("Dear {}, welcome", "Siobhan Gallagher"),
    "LOCATION": ("she lives at {} now", "221 Baker Street"),
    "DATE_OF_BIRTH": ("date of birth: {}", "1984-03-12"),
}


def _fullwidth(value: str) -> str:
    return "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in value
    )


def _mixed(value: str) -> str:
    """Cyrillic look-alikes for some Latin letters, a zero-width space and a fullwidth digit."""
    look = str.maketrans({"a": "а", "e": "е", "o": "о", "c": "с"})
    out = value.translate(look)
    out = out[:3] + ZWSP + out[3:]
    return "".join(_fullwidth(c) if c.isdigit() and i % 3 == 0 else c for i, c in enumerate(out))


VARIANTS = {
    "zero-width": lambda v: ZWSP.join(v),
    # a word joiner inside every word, a zero-width joiner after every space
    "joiner": lambda v: " ".join(
        w[: len(w) // 2] + WJ + w[len(w) // 2 :] for w in v.split(" ")
    ).replace(" ", " " + ZWJ),
    "fullwidth": _fullwidth,
    "mixed": _mixed,
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("entity", sorted(VALUES))
def test_obfuscated_value_is_detected(scrubber: Scrubber, entity: str, variant: str) -> None:
    sentence, value = VALUES[entity]
    disguised = VARIANTS[variant](value)
    text = sentence.format(disguised)
    spans = scrubber.detect([text], tenant="t")[0]
    start = text.index(disguised)
    assert any(
        s.entity_type == entity and s.start <= start and s.end >= start + len(disguised)
        for s in spans
    ), (entity, variant, [(s.entity_type, s.start, s.end) for s in spans])
    out = scrubber.scrub_text(text, tenant="t").text
    assert disguised not in out and fold(out).text.find(fold(disguised).text) == -1


def test_offsets_map_back_to_original_characters() -> None:
    text = "pay ＤＥ８９ to\u200bday é"
    f = fold(text)
    assert f.text == "pay DE89 today é"
    start = f.text.index("DE89")
    assert f.to_original(start, start + 4) == (4, 8)
    # A span ending just before a dropped character never swallows the next word.
    assert text[slice(*f.to_original(f.text.index("to"), f.text.index("to") + 2))] == "to"


def test_all_cyrillic_words_are_left_alone() -> None:
    assert fold("Москва and Paris").text == "Москва and Paris"
    assert fold("pаypal").text == "paypal"  # Cyrillic а inside a Latin word


def test_combining_marks_are_composed() -> None:
    f = fold("Jose\u0301 Marti\u0301")
    assert f.text == "José Martí"
    assert f.to_original(0, 4) == (0, 5)  # the accent belongs to its letter
