"""Admins' own recognizers (profile ``recognizers`` and ``deny_list``), run with RE2.

An admin's regex is input we do not control: with a backtracking engine, ``(a+)+$`` in a
profile would let any request stall a worker. RE2 matches in linear time and rejects what it
cannot do in linear time (backreferences, lookaround); the profile validator reports such a
pattern at its line, so it never reaches this class. Context words raise the score as they
do for Presidio's own recognizers (Presidio's context enhancer runs on these results).
"""

from __future__ import annotations

import re

from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from secure_aiaas.privacy.linear import compile_linear


class CustomPatternRecognizer(LocalRecognizer):
    """One entity type; named regexes with scores; optional context words."""

    def __init__(
        self,
        *,
        name: str,
        entity: str,
        patterns: list[tuple[str, str, float]],
        context: list[str] | None = None,
        ignore_case: bool = False,
    ) -> None:
        self.label = name
        self.patterns = [(n, compile_linear(p, ignore_case=ignore_case), s) for n, p, s in patterns]
        super().__init__(
            supported_entities=[entity], name=name, supported_language="en", context=context or []
        )

    @classmethod
    def deny_list(cls, entity: str, terms: list[str]) -> CustomPatternRecognizer:
        """Whole occurrences of the terms (case-insensitive), score 1.0."""
        alternation = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
        return cls(
            name=f"deny:{entity}",
            entity=entity,
            patterns=[("deny_list", rf"(?:^|\b|\W)({alternation})(?:\b|\W|$)", 1.0)],
            ignore_case=True,
        )

    def load(self) -> None:  # compiled in __init__
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Every match of every pattern (group 1 when the pattern has one)."""
        out: list[RecognizerResult] = []
        for pattern_name, regex, score in self.patterns:
            group = 1 if regex.groups >= 1 else 0
            for m in regex.finditer(text):
                start, end = m.start(group), m.end(group)
                if end > start:
                    out.append(
                        RecognizerResult(
                            self.supported_entities[0],
                            start,
                            end,
                            score,
                            analysis_explanation=AnalysisExplanation(
                                recognizer=self.label,
                                original_score=score,
                                pattern_name=pattern_name,
                            ),
                            recognition_metadata={
                                RecognizerResult.RECOGNIZER_NAME_KEY: self.label,
                                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                            },
                        )
                    )
        return out
