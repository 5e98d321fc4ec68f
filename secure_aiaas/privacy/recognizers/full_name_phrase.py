"""PERSON: "First Last" after a word that takes a person ("for", "recommends", "with", "cc").

A pair of capitalised name words in mid-sentence, right after such a word, is a full name far
more often than not. Texts about software are skipped: there the pair is usually a product
("from Docker Swarm").
"""

from __future__ import annotations

import re

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from secure_aiaas.privacy.name_words import CAP_WORD, TECH_WORDS, is_name_candidate, words
from secure_aiaas.privacy.recognizers._base import RuleRecognizer

_LEAD = (
    r"for|recommends|recommended|with|by|and|cc|ask|asked|tell|told|thank|thanked|contact|contacted|meet|met|"
    r"call|called|email|emailed|invite|invited|hire|hired|promote|promoted|dismiss|dismissed|from|to|about|"
    r"regarding|re|says|said|wrote|per|via"
)
_PAIR = re.compile(
    rf"(?<![\w.])(?:{_LEAD})[ \t]{{1,8}}((?:{CAP_WORD})[ \t]{{1,8}}(?:{CAP_WORD}))(?![ \t]{{1,8}}[A-Z])(?![\w'’-])"
)
# A single first name after the same words, when punctuation or a lowercase word follows.
_SINGLE = re.compile(
    rf"(?<![\w.])(?:{_LEAD})[ \t]{{1,8}}({CAP_WORD})(?=[ \t]{{0,8}}[,;.!?)]|[ \t]{{1,8}}[a-z])"
)
_NOT_NAMES = words(
    """
    monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december i
    """
)


class FullNamePhraseRecognizer(RuleRecognizer):
    """Name words (a pair, or one before punctuation) after a person-taking word, outside software texts."""

    ENTITY = "PERSON"

    DEFAULT_SCORE = 0.55

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Return the name pairs."""
        if any(w in TECH_WORDS for w in re.findall(r"[a-z]+", text.lower())):
            return []
        out: list[RecognizerResult] = []
        for m in _PAIR.finditer(text):
            if all(is_name_candidate(w) for w in m.group(1).split()):
                out.append(RecognizerResult(self.ENTITY, m.start(1), m.end(1), self.score))
        for m in _SINGLE.finditer(text):
            if is_name_candidate(m.group(1)) and m.group(1).lower() not in _NOT_NAMES:
                out.append(RecognizerResult(self.ENTITY, m.start(1), m.end(1), self.score))
        return out
