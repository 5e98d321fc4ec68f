"""PERSON from context: titles, self-introductions, greetings, sign-offs, role words.

spaCy's small model misses names it has not seen, lowercase names and many names with
diacritics. People introduce and address each other in a few fixed ways; after such a trigger,
the next one to three name-shaped words are taken as a name, lowercase included.
"""

from __future__ import annotations

import re

from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from secure_aiaas.privacy.name_words import (
    CAP_WORD,
    NAME_WORD,
    is_lowercase_name_candidate,
    is_name_candidate,
)

# After these, lowercase names count too (people type "i'm maria lopez").
_STRONG = r"my name is|name is|name's|names|i'm|i am|im|this is|it's|it is|call me|name\s{0,8}[:=]|full name\s{0,8}[:=]"
# After these only capitalised words count ("thanks for" is not a name).
_WEAK = (
    r"dear|hi|hello|hey|thanks|thank you|regards,|cheers,|best,|sincerely,|yours,|"
    r"patient|pt\.|employee|customer|client|requester|candidate|applicant|new hire|"
    r"manager:|assigned to|spoke with|spoke to|seen by|referred by|reported by|escalated by|"
    r"filed by|opened by|held by|completed by|approved by|signed by|on behalf of|next of kin|"
    r"account holder|cardholder|holder|contact:|cc:|attn:?|from:|to:|interview with|meeting with|"
    r"mr\.?|mrs\.?|ms\.?|miss|dr\.?|prof\.?|sr\.?|sra\.?|herr|frau|mme\.?|mlle\.?"
)
_STRONG_RE = re.compile(
    rf"(?i:\b(?:{_STRONG}))[ \t]{{1,8}}((?:{NAME_WORD})(?:[ \t]{{1,8}}{NAME_WORD}){{0,2}})"
)
_WEAK_RE = re.compile(
    rf"(?i:(?<![\w.])(?:{_WEAK}))[ \t\n]{{1,8}}((?:{CAP_WORD})(?:[ \t]{{1,8}}{CAP_WORD}){{0,2}})"
)
# `user "Jane Doe"`, `by "Jane Doe"`: a quoted run of capitalised words after a role word.
_QUOTED_RE = re.compile(
    rf"(?i:\b(?:user|by|name|owner|author))\s{{0,8}}[:=]?\s{{0,8}}\"((?:{CAP_WORD})(?:[ \t]{{1,8}}{CAP_WORD}){{0,3}})\""
)
# Forms and notes: "Referral letter: Emeka Lewis, ..." (two name words after a colon, then punctuation).
_LABELLED_RE = re.compile(
    rf":[ \t]{{0,8}}((?:{CAP_WORD})[ \t]{{1,8}}(?:{CAP_WORD}))(?=[ \t]{{0,8}}(?:[,;.)(]|$))",
    re.MULTILINE,
)
# "Kofi here - ..." at the start of a message.
_HERE_RE = re.compile(rf"^\s{{0,8}}({CAP_WORD})\s{{1,8}}here\b")


class PersonContextRecognizer(LocalRecognizer):
    """Names announced by a trigger phrase (title, greeting, sign-off, role word)."""

    ENTITY = "PERSON"

    def __init__(self, score: float = 0.6) -> None:
        self.score = score
        super().__init__(
            supported_entities=[self.ENTITY],
            name="PersonContextRecognizer",
            supported_language="en",
        )

    def load(self) -> None:  # nothing to load: regexes compiled at import
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Return PERSON spans that follow a trigger."""
        results: list[RecognizerResult] = []
        for regex in (_STRONG_RE, _WEAK_RE, _QUOTED_RE, _HERE_RE, _LABELLED_RE):
            for m in regex.finditer(text):
                start, end = self._trim(text, m.start(1), m.end(1))
                if end > start:
                    results.append(RecognizerResult(self.ENTITY, start, end, self.score))
        return results

    @staticmethod
    def _trim(text: str, start: int, end: int) -> tuple[int, int]:
        """Keep the leading words that may be names; stop at the first that may not."""
        kept_end = start
        for w in re.finditer(r"\S+", text[start:end]):
            word = w.group()
            ok = (
                is_name_candidate(word) if word[:1].isupper() else is_lowercase_name_candidate(word)
            )
            if not ok:
                break
            kept_end = start + w.end()
        return start, kept_end
