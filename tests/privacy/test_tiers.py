"""Profiles choose the tier: accurate (rules + spaCy + PII model, the default) or fast."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from secure_aiaas.privacy import PrivacyPolicy, Scrubber, load_policy, validate_privacy_file
from tests.privacy.conftest import POLICY

TEXT = "ok thanks, tell ingrid halvorsen i said hi"


def _with_tier(tier: str) -> PrivacyPolicy:
    policy = load_policy(POLICY)
    profile = dataclasses.replace(policy.select("*"), tier=tier)
    return PrivacyPolicy({profile.name: profile}, (("*", "*", profile.name),))


def test_default_tier_is_accurate() -> None:
    assert load_policy(POLICY).select("anyone").tier == "accurate"


def test_accurate_tier_uses_the_pii_model(scrubber: Scrubber) -> None:
    accurate = scrubber.using(_with_tier("accurate")).scrub_text(TEXT, tenant="t").text
    fast = scrubber.using(_with_tier("fast")).scrub_text(TEXT, tenant="t").text
    assert "ingrid" not in accurate and "halvorsen" not in accurate
    assert fast != accurate  # the fast tier has no model: this lower-case name gets through


def test_fast_tier_still_scrubs_validated_types(scrubber: Scrubber) -> None:
    out = (
        scrubber.using(_with_tier("fast"))
        .scrub_text("mail kari@example.no, card 4111 1111 1111 1111, Dear Maria Lopez", tenant="t")
        .text
    )
    assert "kari@example.no" not in out and "4111" not in out and "Maria" not in out


def test_unknown_tier_is_reported_at_its_line(tmp_path: Path) -> None:
    text = POLICY.read_text().replace("  standard:\n", "  standard:\n    tier: turbo\n", 1)
    path = tmp_path / "privacy.yaml"
    path.write_text(text)
    errors = validate_privacy_file(path)
    assert any("unknown tier 'turbo'" in e and e.startswith(f"{path}:") for e in errors), errors


def test_scrubber_without_model_runs_accurate_profiles_as_fast() -> None:
    s = Scrubber.build(_with_tier("accurate"), pii_model=None)
    try:
        out = s.scrub_text("Dear Maria Lopez, card 4111 1111 1111 1111", tenant="t").text
        assert "Maria" not in out and "4111" not in out
    finally:
        s.close()


@pytest.mark.parametrize("tier", ["fast", "accurate"])
def test_profile_file_accepts_both_tiers(tmp_path: Path, tier: str) -> None:
    text = POLICY.read_text().replace("  standard:\n", f"  standard:\n    tier: {tier}\n", 1)
    path = tmp_path / "privacy.yaml"
    path.write_text(text)
    assert validate_privacy_file(path) == []
    assert load_policy(path).select("*").tier == tier
