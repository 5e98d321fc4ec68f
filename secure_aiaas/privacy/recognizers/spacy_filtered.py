"""spaCy NER (PERSON, LOCATION, …) with the small model's typical false positives removed.

Filtering inside the recognizer, before Presidio merges duplicates, keeps a name that another
recognizer (a title, a greeting) also found even when the NER span itself is dropped.
"""

from __future__ import annotations

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from secure_aiaas.privacy.span_rules import NER_SOURCE, Span, filter_ner


class FilteredSpacyRecognizer(SpacyRecognizer):
    """SpacyRecognizer whose spans pass ``filter_ner`` (codes, log levels, software names out)."""

    def __init__(self, supported_entities: list[str]) -> None:
        super().__init__(supported_entities=supported_entities, name=NER_SOURCE)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """NER results, filtered."""
        results = super().analyze(text, entities, nlp_artifacts)
        spans = filter_ner(
            text, [Span(r.entity_type, r.start, r.end, r.score, NER_SOURCE) for r in results]
        )
        return [RecognizerResult(s.entity_type, s.start, s.end, s.score) for s in spans]
