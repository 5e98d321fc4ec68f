"""A labelled evaluation record: text, its format, and the PII values in it (type, offsets)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gold:
    """One PII value in a sample: its type and offsets in the sample text."""

    entity_type: str
    start: int
    end: int


@dataclass(frozen=True)
class Sample:
    """One labelled text: a format tag, the text, its PII values (empty when PII-free)."""

    domain: str
    text: str
    gold: tuple[Gold, ...] = field(default_factory=tuple)

    def values(self) -> list[tuple[str, str]]:
        """(type, value) for each PII value."""
        return [(g.entity_type, self.text[g.start : g.end]) for g in self.gold]
