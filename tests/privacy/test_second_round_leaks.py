"""Leak categories fixed in the second round of issue 12, one fresh hand-written case each, and
PII-free texts (software, products, fields that hold products) that must stay unchanged."""

from __future__ import annotations

import pytest

from secure_aiaas.privacy import Scrubber

LEAKS = [
    # lone lower-case first names and towns in chat and bank messages
    ("lower-case first name, bank", "sent 40 to wiebke for the ferry tickets", ["wiebke"]),
    ("lower-case first name, chat", "lol radoslava forgot her charger again", ["radoslava"]),
    ("lower-case name after a verb", "pls remind oyelaran about the deposit", ["oyelaran"]),
    ("lower-case surname alone", "spoke to przybylski, he moved out last month", ["przybylski"]),
    ("lower-case hyphenated name", "heard from ana-lucía? no reply yet", ["ana-lucía"]),
    ("lower-case town in chat", "we're stuck in hlohovec till tuesday", ["hlohovec"]),
    # an initial before a surname, particles included
    ("initial and surname", "Standing order for K. Wojtaszek: 120.00 monthly.", ["Wojtaszek"]),
    (
        "initial, particle, surname",
        "Beneficiary changed to P. van der Heijden.",
        ["van der Heijden"],
    ),
    ("initial before an English word", "Payment to T. Moss of 80.00 EUR failed.", ["Moss"]),
    # JSON leaves read with their field names (camelCase keys too)
    (
        "camelCase given name",
        '{"givenName": "Oluwaseun", "familyName": "Adebayo-Cole"}',
        ["Oluwaseun", "Adebayo-Cole"],
    ),
    ("recipient field", '{"to": "Nkechinyere Obi-Eze", "subject": "lease"}', ["Nkechinyere"]),
    # names that are also programming languages, off the allow list now
    ("Julia is a person", "Julia called me about the lease on Friday.", ["Julia"]),
    ("Ruby is a person", "Please forward the signed contract to Ruby Achterberg.", ["Ruby"]),
]

PII_FREE = [
    "Can you write a tuple in Julia?",
    "How do I sort a hash in Ruby?",
    "We rewrote the parser in Julia and cut memory use by half.",
    "The Ruby bindings are generated from the C headers.",
    "Swift 6 adds strict concurrency checking.",
    "Meet Zolara 5, our lightest laptop yet.",
    "Can you show me how to read a CSV file with numpy?",
    "2026-03-02 11:20 INFO POST /api/v1/jobs 201 12ms",
    '{"runtime": "Phoenix", "version": "1.7"}',
    '{"product": "Tunis 14 SE", "qty": 3}',
    '{"language": "Crystal", "stars": 812}',
]


@pytest.mark.parametrize("label, text, values", LEAKS, ids=[c[0] for c in LEAKS])
def test_second_round_leak_is_scrubbed(
    scrubber: Scrubber, label: str, text: str, values: list[str]
) -> None:
    if text.startswith("{"):
        import json

        out = json.dumps(
            scrubber.scrub_json(json.loads(text), tenant="t").value, ensure_ascii=False
        )
    else:
        out = scrubber.scrub_text(text, tenant="t").text
    for value in values:
        assert value not in out, f"{label}: {value!r} survived in {out!r}"


@pytest.mark.parametrize("text", PII_FREE)
def test_second_round_pii_free_text_is_unchanged(scrubber: Scrubber, text: str) -> None:
    if text.startswith("{"):
        import json

        assert scrubber.scrub_json(json.loads(text), tenant="t").value == json.loads(text)
    else:
        assert scrubber.scrub_text(text, tenant="t").text == text


def test_no_given_name_on_the_default_allow_list(scrubber: Scrubber) -> None:
    allowed = {w.lower() for w in scrubber.profile_for("t").allow_list}
    assert not allowed & {"julia", "ruby"}
