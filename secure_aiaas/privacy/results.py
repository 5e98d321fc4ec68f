"""What scrubbing returns: scrubbed text and entity types/offsets/scores, never values.

The one exception is ``ConversationResult.placeholders`` (a ``PlaceholderMap``): placeholder →
original value, for trusted code that must put values back into a model's answer. It is a value
handed to the caller, never stored, logged or audited by this package.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from secure_aiaas.privacy.operators import PlaceholderMap


@dataclass(frozen=True)
class Entity:
    """A detected entity: type, offsets in the ORIGINAL input text, score. Never the value."""

    entity_type: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Wire form."""
        return {
            "type": self.entity_type,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 3),
        }


@dataclass(frozen=True)
class ScrubResult:
    """Scrubbed text and what was found in the input (types, offsets, scores only)."""

    text: str
    entities: tuple[Entity, ...]

    def entity_counts(self) -> dict[str, int]:
        """Entity type → count: what audit records and logs may carry."""
        return dict(Counter(e.entity_type for e in self.entities))

    def to_dict(self) -> dict[str, Any]:
        """Wire form for ``POST /v1/privacy/scrub``."""
        return {"text": self.text, "entities": [e.to_dict() for e in self.entities]}


@dataclass(frozen=True)
class JsonScrubResult:
    """A scrubbed JSON value (keys, strings and numbers scrubbed) and the entity counts."""

    value: Any
    counts: dict[str, int]


@dataclass(frozen=True)
class ConversationResult:
    """The texts of one conversation scrubbed as one request, with one placeholder map."""

    results: tuple[ScrubResult, ...]
    placeholders: PlaceholderMap

    def entity_counts(self) -> dict[str, int]:
        """Entity type → count over all texts."""
        total: Counter[str] = Counter()
        for r in self.results:
            total.update(r.entity_counts())
        return dict(total)

    def __repr__(self) -> str:  # never print values, even by accident
        return f"ConversationResult({len(self.results)} texts, {self.placeholders!r})"
