"""PHONE_NUMBER: international and national numbers, validated by ``phonenumbers``.

Presidio's recognizer runs phonenumbers' matcher over the whole text once per region, which
dominated our profile. Here one regex finds digit runs that look like a number, and each
candidate is parsed once: as written when it starts with "+" or "00", else against a short list
of regions. Only numbers that phonenumbers calls valid are kept.
"""

from __future__ import annotations

import re

import phonenumbers
from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

_CANDIDATE = re.compile(
    r"(?<![\w+/.-])(?:\+|00)?\(?\d[\d \t().-]{5,18}\d(?:[ \t]{0,8}(?:x|ext\.?|#)[ \t]{0,8}\d{1,5})?(?![\w])"
)
# An ISO date, possibly followed by the hour ("2025-03-16 05"), is not a phone number.
_DATE_PREFIX = re.compile(r"^(?:19|20)\d\d[-/.][01]?\d[-/.][0-3]?\d")
_CONTEXT = re.compile(
    r"(?i:phone|tel|telephone|mobile|cell|call|ring|text|sms|whatsapp|fax|contact|number|no\.|nr\.?)"
    r"[\s:.#=()-]{0,12}$"
)
DEFAULT_REGIONS = (
    "US",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "NL",
    "IN",
    "BR",
    "AU",
    "CA",
    "MX",
    "PL",
    "SE",
    "JP",
    "SG",
)


class PhoneNumberRecognizer(LocalRecognizer):
    """Phone numbers validated by phonenumbers (see ``_score``)."""

    ENTITY = "PHONE_NUMBER"

    def __init__(self, regions: tuple[str, ...] = DEFAULT_REGIONS) -> None:
        self.regions = regions
        super().__init__(
            supported_entities=[self.ENTITY], name="PhoneNumberRecognizer", supported_language="en"
        )

    def load(self) -> None:  # phonenumbers metadata loads lazily on first parse
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Return valid phone numbers."""
        out: list[RecognizerResult] = []
        for m in _CANDIDATE.finditer(text):
            candidate = m.group().rstrip(" \t.-")
            digits = re.sub(r"\D", "", re.split(r"[ \t]{0,8}(?:x|ext\.?|#)", candidate)[0])
            if not 7 <= len(digits) <= 15 or _DATE_PREFIX.match(candidate.strip()):
                continue
            context = _CONTEXT.search(text, max(0, m.start() - 24), m.start()) is not None
            score = self._score(candidate, context)
            if score:
                start = m.start() + (len(m.group()) - len(m.group().lstrip()))
                out.append(RecognizerResult(self.ENTITY, start, m.start() + len(candidate), score))
        return out

    def _score(self, candidate: str, context: bool) -> float:
        """0.7 valid international, 0.5 valid national; 0.4 merely possible, but only in
        international notation or after a phone word (numbers people type are often not valid
        in any numbering plan, and still theirs)."""
        international = candidate.startswith(("+", "00"))
        regions = (None,) if international else self.regions
        number = "+" + candidate[2:] if candidate.startswith("00") else candidate
        possible = False
        for region in regions:
            try:
                parsed = phonenumbers.parse(number, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed):
                return 0.7 if international else 0.5
            possible = possible or phonenumbers.is_possible_number(parsed)
        return 0.4 if possible and (international or context) else 0.0
