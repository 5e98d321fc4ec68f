"""Profiles: selection per tenant/model, validation with file:line, hot reload keeping last good."""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest

from secure_aiaas.privacy import ProfileStore, Scrubber, load_policy, validate_privacy_file
from tests.privacy.conftest import POLICY

MULTI = textwrap.dedent("""\
    version: 1
    profiles:
      base:
        entities: {PERSON: 0.5, EMAIL_ADDRESS: 0.5}
        operator: redact
      acme:
        entities: {PERSON: 0.5, EMAIL_ADDRESS: 0.5, TICKET_ID: 0.5, PROJECT: 0.5}
        operator: placeholder
        allow_list: [Ada Lovelace]
        deny_list:
          PROJECT: [Nightingale]
        recognizers:
          - name: ticket
            entity: TICKET_ID
            patterns:
              - {name: tk, regex: "\\\\bTK-\\\\d{5}\\\\b", score: 0.3}
            context: [ticket]
      emails_only:
        entities: {EMAIL_ADDRESS: 0.5}
    assignments:
      - {tenant: "*", model: "*", profile: base}
      - {tenant: acme, profile: acme}
      - {tenant: acme, model: summarizer, profile: emails_only}
      - {model: translator, profile: emails_only}
    """)
TEXT = (
    "Ticket TK-12345 from John Smith (john@example.com) about project Nightingale; cc Ada Lovelace."
)


@pytest.fixture()
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "privacy.yaml"
    path.write_text(MULTI)
    return path


def test_shipped_policy_is_valid() -> None:
    assert validate_privacy_file(POLICY) == []
    load_policy(POLICY)


@pytest.mark.parametrize(
    "tenant, model, expected",
    [
        ("other", None, "base"),
        ("acme", None, "acme"),
        ("acme", "chat", "acme"),
        ("acme", "summarizer", "emails_only"),
        ("other", "translator", "emails_only"),
        ("acme", "translator", "acme"),
    ],
)
def test_most_specific_assignment_wins(
    policy_file: Path, tenant: str, model: str | None, expected: str
) -> None:
    assert load_policy(policy_file).select(tenant, model).name == expected


def test_profiles_apply_per_tenant_and_model(scrubber: Scrubber, policy_file: Path) -> None:
    s = scrubber.using(load_policy(policy_file))
    base = s.scrub_text(TEXT, tenant="other").text
    acme = s.scrub_text(TEXT, tenant="acme").text
    summ = s.scrub_text(TEXT, tenant="acme", model="summarizer").text
    assert "<PERSON>" in base and "TK-12345" in base and "Nightingale" in base
    # custom recognizer boosted by its context word, deny list, allow list:
    assert (
        "TK-12345" not in acme
        and "Nightingale" not in acme
        and "Ada Lovelace" in acme
        and "John" not in acme
    )
    assert "John Smith" in summ and "john@example.com" not in summ


def _errors_for(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return validate_privacy_file(path)


@pytest.mark.parametrize(
    "old, new, line, fragment",
    [
        ("operator: redact", "operator: shred", 5, "unknown operator 'shred'"),
        (
            "PERSON: 0.5, EMAIL_ADDRESS: 0.5}\n    operator",
            "PERSON: 1.5, EMAIL_ADDRESS: 0.5}\n    operator",
            4,
            "between 0 and 1",
        ),
        ('regex: "\\\\bTK', 'regex: "(\\\\bTK', 16, "invalid regex"),
        ("profile: emails_only}", "profile: nope}", 23, "unknown profile 'nope'"),
        ("TICKET_ID: 0.5, PROJECT", "TICKETS: 0.5, PROJECT", 7, "unknown entity 'TICKETS'"),
        ("allow_list:", "alow_list:", 9, "unknown profile key 'alow_list'"),
    ],
)
def test_validation_points_at_the_line(
    tmp_path: Path, old: str, new: str, line: int, fragment: str
) -> None:
    assert old in MULTI
    errors = _errors_for(tmp_path, MULTI.replace(old, new, 1))
    assert any(
        e.startswith(f"{tmp_path / 'bad.yaml'}:{line}: ") and fragment in e for e in errors
    ), errors


def test_validation_requires_a_default_assignment(tmp_path: Path) -> None:
    errors = _errors_for(
        tmp_path,
        MULTI.replace('{tenant: "*", model: "*", profile: base}', "{tenant: x, profile: base}"),
    )
    assert any("default" in e for e in errors)


def test_broken_yaml_reports_its_line(tmp_path: Path) -> None:
    errors = _errors_for(tmp_path, "version: 1\nprofiles:\n  a: [\n")
    assert len(errors) == 1 and ":4: invalid YAML" in errors[0]


def test_hot_reload_applies_good_edits_and_keeps_last_good(
    scrubber: Scrubber, policy_file: Path
) -> None:
    store = ProfileStore(policy_file, check_every_s=0)  # the file is looked at every call
    s = scrubber.using(store)
    assert "<PERSON>" in s.scrub_text(TEXT, tenant="other").text

    policy_file.write_text(MULTI.replace("operator: redact", "operator: mask"))
    _bump_mtime(policy_file)
    assert "<PERSON>" not in s.scrub_text(TEXT, tenant="other").text  # reloaded on the next call

    policy_file.write_text(MULTI.replace("operator: redact", "operator: shred"))
    _bump_mtime(policy_file)
    out = s.scrub_text(TEXT, tenant="other").text
    assert "John" not in out and "****" in out  # invalid edit: the last good version stays
    assert store.last_errors and "shred" in store.last_errors[0]
    assert s.reload_profiles() == store.last_errors


def test_an_edit_takes_effect_within_the_check_interval(
    scrubber: Scrubber, policy_file: Path
) -> None:
    """The file is stat'ed at most once per interval (every scrubbed request asks)."""
    store = ProfileStore(policy_file, check_every_s=1.0)
    s = scrubber.using(store)
    policy_file.write_text(MULTI.replace("operator: redact", "operator: mask"))
    _bump_mtime(policy_file)
    assert "<PERSON>" in s.scrub_text(TEXT, tenant="other").text  # not looked at yet
    time.sleep(1.05)
    assert "<PERSON>" not in s.scrub_text(TEXT, tenant="other").text


def test_invalid_file_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "privacy.yaml"
    shutil.copy(POLICY, bad)
    bad.write_text(bad.read_text().replace("operator: placeholder", "operator: nope", 1))
    with pytest.raises(ValueError, match="unknown operator"):
        ProfileStore(bad)


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_cli_check_reports_file_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from secure_aiaas.cli.privacy import app

    runner = CliRunner()
    assert runner.invoke(app, ["check", "--policy", str(POLICY)]).exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(MULTI.replace("operator: redact", "operator: shred"))
    result = runner.invoke(app, ["check", "--policy", str(bad)])
    assert result.exit_code == 1 and f"{bad}:5: unknown operator 'shred'" in result.output
