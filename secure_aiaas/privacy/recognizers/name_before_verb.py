"""PERSON: "First Last" as the subject of a verb ("Astrid Castillo refused medication").

Notes and tickets name people as the subject of a sentence. Two capitalised name words at the
start of a sentence (or after a colon), followed by a past-tense or third-person verb, are a
full name far more often than anything else; the small NER model misses many unseen ones.
"""

from __future__ import annotations

import re

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from secure_aiaas.privacy.name_words import CAP_WORD, TECH_WORDS, is_name_candidate
from secure_aiaas.privacy.recognizers._base import RuleRecognizer

_SUBJECT = re.compile(
    rf"(?:^|(?<=[.:;!?\n]))[ \t]{{0,8}}((?:{CAP_WORD})[ \t]{{1,8}}(?:{CAP_WORD}))[ \t]{{1,8}}"
    r"(?=[a-z]+(?:ed|s)\b)",
    re.MULTILINE,
)


class NameBeforeVerbRecognizer(RuleRecognizer):
    """Two capitalised words opening a sentence, followed by a verb ending in -ed or -s."""

    ENTITY = "PERSON"

    DEFAULT_SCORE = 0.55

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Return the two-word subject when both words may be names."""
        out: list[RecognizerResult] = []
        for m in _SUBJECT.finditer(text):
            words = m.group(1).split()
            if all(is_name_candidate(w) and w.lower() not in TECH_WORDS for w in words):
                out.append(RecognizerResult(self.ENTITY, m.start(1), m.end(1), self.score))
        return out
