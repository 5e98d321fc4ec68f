"""Scrubber behaviour: JSON field by field, fail-closed, no values kept, offline, no PII in logs."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.errors import PrivacyError
from secure_aiaas.privacy import Scrubber, load_policy
from tests.privacy.conftest import POLICY

SECRET_TEXT = (
    "Dear Maria Lopez, your card 4111 1111 1111 1111 and phone +44 7911 123456 are on file."
)
SECRET_VALUES = ["Maria", "Lopez", "4111", "7911 123456"]


def test_json_is_scrubbed_field_by_field_keys_kept(scrubber: Scrubber) -> None:
    obj = {
        "customer": {"name": "kofi byrne", "email": "kofi@example.com"},
        "items": [{"note": "call Jane Doe on +1 415-555-0132"}, 3, None],
        "dob": "1984-03-12",
        "ok": True,
    }
    res = scrubber.scrub_json(obj, tenant="t")
    assert set(res.value) == {"customer", "items", "dob", "ok"} and set(res.value["customer"]) == {
        "name",
        "email",
    }
    flat = json.dumps(res.value)
    for value in ("kofi", "byrne", "kofi@example.com", "Jane Doe", "415-555-0132", "1984-03-12"):
        assert value not in flat
    assert res.value["items"][1:] == [3, None] and res.value["ok"] is True
    assert res.counts == {"PERSON": 2, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1, "DATE_OF_BIRTH": 1}
    assert obj["customer"]["name"] == "kofi byrne"  # the caller's object is not modified


def test_result_serialisation_and_counts_carry_no_values(scrubber: Scrubber) -> None:
    res = scrubber.scrub_text(SECRET_TEXT, tenant="t")
    wire = json.dumps(res.to_dict())
    counts = json.dumps(res.entity_counts())
    entities = json.dumps([e.to_dict() for e in res.entities])
    for value in SECRET_VALUES:
        assert value not in wire and value not in counts and value not in entities
    assert res.entity_counts() == {"PERSON": 1, "CREDIT_CARD": 1, "PHONE_NUMBER": 1}
    # offsets refer to the original input text
    assert SECRET_TEXT[res.entities[0].start : res.entities[0].end] == "Maria Lopez"
    assert {f.name for f in dataclasses.fields(res.entities[0])} == {
        "entity_type",
        "start",
        "end",
        "score",
    }


def test_unknown_model_refuses_at_build() -> None:
    with pytest.raises(PrivacyError):
        Scrubber.build(load_policy(POLICY), model_name="en_core_web_nonexistent")


def test_closed_scrubber_refuses_never_passes_through() -> None:
    s = Scrubber.build(load_policy(POLICY))
    s.close()
    with pytest.raises(PrivacyError) as info:
        s.scrub_texts([SECRET_TEXT], tenant="t")
    assert all(v not in str(info.value) for v in SECRET_VALUES)


def test_engine_failure_is_a_privacy_error_without_input_text(scrubber: Scrubber) -> None:
    class Broken:
        def pipe(self, texts: Any, batch_size: int) -> Any:
            raise RuntimeError(
                f"cannot process {list(texts)}"
            )  # a library error that quotes its input

    broken = Scrubber.build(load_policy(POLICY), pii_model=None)
    assert broken._detector is not None
    broken._detector.nlp = Broken()  # the real engines, with spaCy failing mid-request
    with pytest.raises(PrivacyError) as info:
        broken.scrub_texts([SECRET_TEXT], tenant="t")
    assert all(
        v not in str(info.value) and v not in info.value.public_message for v in SECRET_VALUES
    )


def test_no_detected_value_is_logged(scrubber: Scrubber, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        scrubber.scrub_texts([SECRET_TEXT], tenant="t")
        scrubber.scrub_json({"name": "Maria Lopez"}, tenant="t")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert all(v not in logged for v in SECRET_VALUES)


def test_tldextract_is_offline(scrubber: Scrubber, monkeypatch: pytest.MonkeyPatch) -> None:
    import tldextract
    import tldextract.tldextract as tld

    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert tld.TLD_EXTRACTOR.suffix_list_urls == () and tld.TLD_EXTRACTOR.fallback_to_snapshot
    assert (
        tldextract.extract("mail.example.co.uk").suffix == "co.uk"
    )  # the bundled snapshot answers
    res = scrubber.scrub_text("write to jane.doe@mail.example.co.uk please", tenant="t")
    assert "jane.doe" not in res.text and res.entity_counts() == {"EMAIL_ADDRESS": 1}
    assert attempts == []


def test_import_loads_nothing_heavy() -> None:
    code = (
        "import sys, secure_aiaas.privacy, secure_aiaas.cli.privacy;"
        "print([m for m in sys.modules if m.split('.')[0] in ('spacy', 'presidio_analyzer', 'presidio_anonymizer', 'tldextract')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"


def test_two_workers_give_the_same_result(scrubber: Scrubber) -> None:
    from secure_aiaas.privacy.evaluation.generated_v1 import generate

    texts = [s.text for s in generate("tune", 60, 10)]
    pooled = Scrubber.build(load_policy(POLICY), workers=2)
    try:
        assert [r.text for r in pooled.scrub_texts(texts, tenant="t")] == [
            r.text for r in scrubber.scrub_texts(texts, tenant="t")
        ]
    finally:
        pooled.close()
