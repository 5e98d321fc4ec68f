"""LOCATION: street addresses ("221 Baker Street", "12 Rue de Rivoli", "8 Bahnhofstraße").

spaCy tags few addresses; a house number followed by words ending in (or starting with) a
street-type word is a strong, language-independent signal.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern, PatternRecognizer

from secure_aiaas.privacy.name_words import CAP_WORD

_SUFFIX = (
    r"Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Lane|Ln\.?|Drive|Dr\.?|Boulevard|Blvd\.?|Way|"
    r"Court|Ct\.?|Place|Pl\.?|Square|Sq\.?|Terrace|Gate|Gardens|Close|Crescent|Parkway|"
    r"Highway|Row|Walk|Hill|Park"
)
_PREFIX = r"Rue|Avenue|Boulevard|Via|Viale|Corso|Piazza|Calle|Avenida|Plaza|Paseo|Gran|Rua|Praça|Ulica|ul\."
_JOINER = r"(?:de|del|de la|des|du|di|da|do|la|le|von|van|der)"
_GERMANIC = r"[^\W\d_]{1,40}(?:straße|strasse|str\.|gasse|weg|platz|allee|laan|gracht|gatan|vägen|gade|vej|veien)"

PATTERNS = [
    Pattern(
        "house number + words + street type",
        rf"\b\d{{1,5}}[A-Za-z]?,?\s{{1,8}}(?:{CAP_WORD}\s{{1,8}}){{1,3}}(?:{_SUFFIX})(?![\w])",
        0.7,
    ),
    Pattern(
        "house number + continental street prefix",
        rf"\b\d{{1,5}}[A-Za-z]?,?\s{{1,8}}(?:{_PREFIX})\s{{1,8}}(?:{_JOINER}\s{{1,8}})?{CAP_WORD}(?:\s{{1,8}}{CAP_WORD})?",
        0.7,
    ),
    Pattern(
        "house number + compound street name", rf"\b\d{{1,5}}[A-Za-z]?,?\s{{1,8}}{_GERMANIC}\b", 0.7
    ),
    Pattern("street name + house number", rf"\b{_GERMANIC}\s{{1,8}}\d{{1,5}}[A-Za-z]?\b", 0.6),
]


class StreetAddressRecognizer(PatternRecognizer):
    """Street addresses with a house number."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="LOCATION",
            patterns=PATTERNS,
            name="StreetAddressRecognizer",
            context=["address", "street", "lives", "ship", "resides"],
            # Case matters here: a street word is capitalised, "in" after it is not.
            global_regex_flags=re.DOTALL | re.MULTILINE,
        )
