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

_CANDIDATE = re.compile(r"(?<![\w+/.-])(?:\+|00)?\(?\d[\d \t().-]{5,18}\d(?![\w])")
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
    """Valid phone numbers; 0.7 for international notation, 0.5 for national."""

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
            digits = re.sub(r"\D", "", candidate)
            if not 7 <= len(digits) <= 15 or re.fullmatch(r"\d{4}-\d{2}-\d{2}", candidate.strip()):
                continue
            score = self._score(candidate)
            if score:
                start = m.start() + (len(m.group()) - len(m.group().lstrip()))
                out.append(RecognizerResult(self.ENTITY, start, m.start() + len(candidate), score))
        return out

    def _score(self, candidate: str) -> float:
        international = candidate.startswith(("+", "00"))
        regions = (None,) if international else self.regions
        number = "+" + candidate[2:] if candidate.startswith("00") else candidate
        for region in regions:
            try:
                parsed = phonenumbers.parse(number, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed):
                return 0.7 if international else 0.5
        return 0.0
