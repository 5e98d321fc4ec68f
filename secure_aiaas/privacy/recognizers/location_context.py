"""LOCATION from context: "relocated to X", "lives in X", "the X clinic", "city: X".

The small spaCy model misses many city names; the phrases people use to say where someone
lives, moves or is treated are few and rarely precede anything but a place.
"""

from __future__ import annotations

import re

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from secure_aiaas.privacy.name_words import CAP_WORD, is_name_candidate, words
from secure_aiaas.privacy.recognizers._base import RuleRecognizer

_TRIGGER = (
    r"relocated to|relocating to|moved to|moving to|move to|lives in|live in|living in|resides in|"
    r"residing in|resident of|based in|located in|born in|grew up in|be in|i'm in|we're in|"
    r"travell?ing to|flying to|flew to|trip to|visiting|office in|branch in|clinic in|hospital in|"
    r"city\s{0,8}[:=]|town\s{0,8}[:=]|i'm from|i am from|is from|are from|comes? from|came from|originally from|"
    r"calling from|writing from"
)
_AFTER_TRIGGER = re.compile(
    rf"(?i:\b(?:{_TRIGGER}))[ \t]{{1,8}}(?:the[ \t]{{1,8}})?((?:{CAP_WORD})(?:[ \t]{{1,8}}{CAP_WORD}){{0,2}})"
)
# "the Leeds clinic", "our Porto office": a capitalised place before a site noun.
_BEFORE_SITE = re.compile(
    rf"\b(?:the|our|your|their|in|at|from)[ \t]{{1,8}}((?:{CAP_WORD})(?:[ \t]{{1,8}}{CAP_WORD}){{0,2}})[ \t]{{1,8}}"
    r"(?:clinic|hospital|office|branch|store|warehouse|campus|site|practice|surgery)\b"
)
_NOT_PLACE = words(
    """
    monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december billing support sales finance engineering legal
    team the a an my our your home work
    """
)


class LocationContextRecognizer(RuleRecognizer):
    """Places announced by a moving, living or site phrase."""

    ENTITY = "LOCATION"

    DEFAULT_SCORE = 0.6

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Return LOCATION spans after a trigger or before a site noun."""
        out: list[RecognizerResult] = []
        for regex in (_AFTER_TRIGGER, _BEFORE_SITE):
            for m in regex.finditer(text):
                words = [w for w in re.finditer(r"\S+", m.group(1))]
                end = m.start(1)
                for w in words:
                    token = w.group().strip(",.;:")
                    if token.lower() in _NOT_PLACE or not is_name_candidate(token):
                        break
                    end = m.start(1) + w.start() + len(token)
                if end > m.start(1):
                    out.append(RecognizerResult(self.ENTITY, m.start(1), end, self.score))
        return out
