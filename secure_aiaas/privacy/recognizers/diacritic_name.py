"""PERSON: capitalised words spelled with diacritics (Søren, Małgorzata, Anaïs).

In English-language service traffic, a capitalised word with a non-ASCII Latin letter is
almost always a proper noun, and the small spaCy model misses many of them. A few loanwords
(Café, Résumé) are excluded. The type may be a place (Kraków): either way it is scrubbed.
"""

from __future__ import annotations

import re
import unicodedata

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from secure_aiaas.privacy.name_words import CAP_WORD, words
from secure_aiaas.privacy.recognizers._base import RuleRecognizer

_WORD = re.compile(rf"(?<![^\W\d_])(?:{CAP_WORD})(?![^\W\d_])")
_LOANWORDS = words(
    """
    cafe resume naive cliche fiance fiancee deja entree facade decor protege souffle creme rose
    touche pate expose saute eclair senor senora pinata jalapeno uber
    """
)


class DiacriticNameRecognizer(RuleRecognizer):
    """Capitalised words containing a non-ASCII Latin letter."""

    ENTITY = "PERSON"

    DEFAULT_SCORE = 0.5

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Return one span per capitalised word with diacritics."""
        if text.isascii():
            return []
        out: list[RecognizerResult] = []
        for m in _WORD.finditer(text):
            word = m.group()
            if word.isascii():
                continue
            plain = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().lower()
            if plain not in _LOANWORDS:
                out.append(RecognizerResult(self.ENTITY, m.start(), m.end(), self.score))
        return out
