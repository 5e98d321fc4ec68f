"""The shared shape of our rule-based recognizers (Presidio `LocalRecognizer`)."""

from __future__ import annotations

from presidio_analyzer import LocalRecognizer


class RuleRecognizer(LocalRecognizer):
    """One entity type, a fixed score, nothing to load: subclasses implement `analyze`."""

    ENTITY = "PERSON"
    DEFAULT_SCORE = 0.5

    def __init__(self, score: float | None = None) -> None:
        self.score = self.DEFAULT_SCORE if score is None else score
        super().__init__(
            supported_entities=[self.ENTITY],
            name=type(self).__name__,
            supported_language="en",
        )

    def load(self) -> None:  # rules: nothing to load
        pass
