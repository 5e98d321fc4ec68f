"""Per-profile recognizers built from the admin's YAML: custom patterns and deny lists (RE2)."""

from __future__ import annotations

from typing import Any

from secure_aiaas.privacy.profiles import Profile
from secure_aiaas.privacy.recognizers.custom_pattern import CustomPatternRecognizer


def profile_recognizers(profile: Profile) -> list[Any]:
    """Recognizers for a profile's custom patterns and deny lists (passed per call)."""
    recognizers: list[Any] = []
    for spec in profile.recognizers:
        recognizers.append(
            CustomPatternRecognizer(
                name=f"custom:{spec.name}",
                entity=spec.entity,
                patterns=[(p.name, p.regex, p.score) for p in spec.patterns],
                context=list(spec.context),
            )
        )
    for entity, terms in profile.deny_list.items():
        if terms:
            recognizers.append(CustomPatternRecognizer.deny_list(entity, list(terms)))
    return recognizers
