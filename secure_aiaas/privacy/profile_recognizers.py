"""Per-profile recognizers built from the admin's YAML: custom patterns and deny lists."""

from __future__ import annotations

from typing import Any

from presidio_analyzer import Pattern, PatternRecognizer

from secure_aiaas.privacy.profiles import Profile


def profile_recognizers(profile: Profile) -> list[Any]:
    """Presidio recognizers for a profile's custom patterns and deny lists (passed per call)."""
    recognizers: list[Any] = []
    for spec in profile.recognizers:
        recognizers.append(
            PatternRecognizer(
                supported_entity=spec.entity,
                name=f"custom:{spec.name}",
                patterns=[Pattern(p.name, p.regex, p.score) for p in spec.patterns],
                context=list(spec.context),
            )
        )
    for entity, terms in profile.deny_list.items():
        recognizers.append(
            PatternRecognizer(
                supported_entity=entity,
                name=f"deny:{entity}",
                deny_list=list(terms),
                deny_list_score=1.0,
            )
        )
    return recognizers
