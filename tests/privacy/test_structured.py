"""JSON: keys, numbers and nested values are scrubbed; structure and non-PII values kept."""

from __future__ import annotations

import json

from secure_aiaas.privacy import Scrubber


def test_card_number_as_json_number_becomes_a_redacted_string(scrubber: Scrubber) -> None:
    res = scrubber.scrub_json({"card": 4111111111111111, "qty": 3, "price": 9.5}, tenant="t")
    assert isinstance(res.value["card"], str) and "4111" not in res.value["card"]
    assert res.value["qty"] == 3 and res.value["price"] == 9.5
    assert res.counts == {"CREDIT_CARD": 1}


def test_phone_number_as_json_number(scrubber: Scrubber) -> None:
    res = scrubber.scrub_json({"phone": 14155550132}, tenant="t")
    assert "4155550132" not in json.dumps(res.value)


def test_personal_data_in_keys_is_scrubbed(scrubber: Scrubber) -> None:
    res = scrubber.scrub_json({"jane.doe@example.com": "x", "status": "ok"}, tenant="t")
    assert "jane.doe@example.com" not in json.dumps(res.value)
    assert res.value["status"] == "ok" and "x" in res.value.values()


def test_keys_that_scrub_alike_keep_every_field(scrubber: Scrubber) -> None:
    from secure_aiaas.privacy import PrivacyPolicy, Profile

    redact = Profile(name="r", thresholds={"EMAIL_ADDRESS": 0.5}, operator="redact")
    s = scrubber.using(PrivacyPolicy({"r": redact}, (("*", "*", "r"),)))
    res = s.scrub_json({"a@example.com": 1, "b@example.com": 2}, tenant="t")
    assert sorted(res.value.values()) == [1, 2] and len(res.value) == 2


def test_nested_values_and_booleans(scrubber: Scrubber) -> None:
    obj = {"a": [{"b": {"note": "ask Priya Raman on +44 7700 900123"}}, True, None, 1.5]}
    res = scrubber.scrub_json(obj, tenant="t")
    flat = json.dumps(res.value)
    assert "Priya" not in flat and "7700" not in flat
    assert res.value["a"][1:] == [True, None, 1.5]
    assert obj["a"][0]["b"]["note"].startswith("ask Priya")  # the caller's object is untouched


def test_json_sent_as_text_is_detected_leaf_by_leaf(scrubber: Scrubber) -> None:
    text = '{"status": "ok", "mode": "strict", "customer": {"name": "ana lima"}}'
    out = scrubber.scrub_text(text, tenant="t").text
    assert '"status": "ok"' in out and '"mode": "strict"' in out and "ana lima" not in out
    json.loads(out)  # still JSON
