"""The transformation step: spans on the original text → Presidio's anonymizer → ScrubResult."""

from __future__ import annotations

from typing import Any

from secure_aiaas.privacy.operators import RequestOperators
from secure_aiaas.privacy.profiles import Profile
from secure_aiaas.privacy.results import Entity, ScrubResult
from secure_aiaas.privacy.span_rules import Span


def transform(
    anonymizer: Any, text: str, spans: list[Span], profile: Profile, ops: RequestOperators
) -> ScrubResult:
    """Apply the profile's operators to ``spans`` of ``text`` (placeholders shared via ``ops``)."""
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    if not spans:
        return ScrubResult(text, ())
    for s in spans:  # number placeholders in reading order (the anonymizer works backwards)
        if profile.operator_for(s.entity_type) == "placeholder":
            ops.function("placeholder", s.entity_type)(text[s.start : s.end])
    operators = {
        t: OperatorConfig(
            "custom", {"lambda": ops.function(profile.operator_for(t), t, profile.mask_char)}
        )
        for t in {s.entity_type for s in spans}
    }
    results = [RecognizerResult(s.entity_type, s.start, s.end, s.score) for s in spans]
    engine_result = anonymizer.anonymize(text=text, analyzer_results=results, operators=operators)
    return ScrubResult(
        engine_result.text, tuple(Entity(s.entity_type, s.start, s.end, s.score) for s in spans)
    )
