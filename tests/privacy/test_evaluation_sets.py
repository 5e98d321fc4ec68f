"""The second round's final split is frozen: its templates and its records never change."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from secure_aiaas.privacy import evaluation

FINAL_TEMPLATES_SHA256 = "a4b110d3c2c830f68aa28424eaa3e66541e6fd5b24674916ff00829894c76e80"
FINAL_RECORDS_SHA256 = "e63348df0c3c910efb9cdeee1dac3c2bf52493e7d8b33e5561cb813bdabb2ffc"


def test_final_templates_unchanged() -> None:
    path = Path(evaluation.__file__).parent / "templates_final.py"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == FINAL_TEMPLATES_SHA256


def test_final_records_unchanged() -> None:
    pytest.importorskip("mimesis", reason="the mixed-* sets draw from mimesis")
    pytest.importorskip("gender_guesser", reason="the mixed-* sets draw from gender-guesser")
    from secure_aiaas.privacy.evaluation import mixed_sets

    records = mixed_sets.generate("mixed-final")
    digest = hashlib.sha256("\x00".join(r.text for r in records).encode()).hexdigest()
    assert digest == FINAL_RECORDS_SHA256


def test_dev_and_final_share_no_source_group() -> None:
    from secure_aiaas.privacy.evaluation import mixed_sets

    for groups in (mixed_sets.MIMESIS_LOCALES, mixed_sets.FAKER_LOCALES, mixed_sets.GG_GROUPS):
        assert not set(groups["A"]) & set(groups["B"])
    from secure_aiaas.privacy.evaluation import faker_sets

    used = set(faker_sets.DEV_LOCALES) | set(faker_sets.FROZEN_LOCALES)
    assert not used & (set(mixed_sets.FAKER_LOCALES["A"]) | set(mixed_sets.FAKER_LOCALES["B"]))


def test_records_do_not_depend_on_the_day_they_are_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faker counts ages from today; the sets count them from a fixed day (CI once failed at midnight)."""
    pytest.importorskip("mimesis", reason="the mixed-* sets draw from mimesis")
    pytest.importorskip("gender_guesser", reason="the mixed-* sets draw from gender-guesser")
    import datetime as real

    import faker.providers.date_time as faker_clock

    from secure_aiaas.privacy.evaluation import faker_sets, mixed_sets

    class Later(real.datetime):
        @classmethod
        def now(cls, tz: real.tzinfo | None = None) -> Later:
            return cls(2031, 2, 28, 12, tzinfo=tz)

    def texts() -> list[str]:
        return [r.text for r in mixed_sets.generate("mixed-dev", 60, 10)] + [
            r.text for r in faker_sets.generate("faker-frozen", 60, 10)
        ]

    today = texts()
    monkeypatch.setattr(faker_clock, "datetime", Later)
    assert texts() == today
