"""IBAN_CODE: IBANs in any case, compact or in groups, checked by country length and mod 97.

Presidio's recognizer expects upper case; people type ``de89 3704 0044 0532 0130 00``. One
RE2 pattern (linear time) finds a country code, two check digits and a run of groups; the run
is cut to the country's IBAN length and kept only when the ISO 7064 mod-97 check holds.
"""

from __future__ import annotations

import re2
from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

# ISO 13616 registry: country -> IBAN length.
LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_CANDIDATE = re2.compile(r"(?:^|[^A-Za-z0-9])([A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){11,32})")


class IbanCodeRecognizer(LocalRecognizer):
    """IBANs with a valid length and checksum (score 1.0)."""

    ENTITY = "IBAN_CODE"

    def __init__(self) -> None:
        super().__init__(
            supported_entities=[self.ENTITY], name="IbanCodeRecognizer", supported_language="en"
        )

    def load(self) -> None:  # nothing to load
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Return valid IBANs."""
        out: list[RecognizerResult] = []
        for m in _CANDIDATE.finditer(text):
            start = m.start(1)
            length = LENGTHS.get(m.group(1)[:2].upper())
            if length is None:
                continue
            compact: list[str] = []
            end = start
            for i in range(start, m.end(1)):
                if text[i].isalnum():
                    compact.append(text[i].upper())
                    end = i + 1
                    if len(compact) == length:
                        break
            if (
                len(compact) == length
                and iban_ok("".join(compact))
                and (end == len(text) or not text[end].isalnum())
            ):
                out.append(RecognizerResult(self.ENTITY, start, end, 1.0))
                continue
            # Off-registry length (a bank's own format, a typo'd group): the checksum alone,
            # over the longest prefix of the run that passes it (score 0.8).
            found = _longest_valid(text, start, m.end(1))
            if found is not None:
                out.append(RecognizerResult(self.ENTITY, start, found, 0.8))
        return out


def _longest_valid(text: str, start: int, stop: int) -> int | None:
    ends: list[int] = []
    compact: list[str] = []
    for i in range(start, stop):
        if text[i].isalnum():
            compact.append(text[i].upper())
            ends.append(i + 1)
    for n in range(min(len(compact), 34), 14, -1):  # at most 20 checks
        end = ends[n - 1]
        if (end == len(text) or not text[end].isalnum()) and iban_ok("".join(compact[:n])):
            return end
    return None


def iban_ok(iban: str) -> bool:
    """ISO 7064 mod 97-10 over the rearranged IBAN."""
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return digits.isdigit() and int(digits) % 97 == 1
