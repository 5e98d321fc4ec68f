"""One case per leak category of issue 12, written fresh (not copied from any evaluation set),
and PII-free texts that must come back unchanged."""

from __future__ import annotations

import pytest

from secure_aiaas.privacy import Scrubber

LEAKS = [
    # names in lower case
    (
        "lower-case name in chat",
        "ok thanks, tell ingrid halvorsen i said hi",
        ["ingrid", "halvorsen"],
    ),
    (
        "lower-case name introduced",
        "hello, this is mateus carvalho from accounts",
        ["mateus", "carvalho"],
    ),
    # a first name or a surname alone, no cue
    ("surname alone", "Spoke with Okafor yesterday; the form is still missing.", ["Okafor"]),
    ("first name alone", "Leticia will bring the signed lease on Thursday.", ["Leticia"]),
    # diacritics, hyphens, non-Anglo names
    ("diacritics", "Patient Zoltán Kovács was discharged in the morning.", ["Zoltán", "Kovács"]),
    (
        "hyphenated",
        "Please forward it to Anne-Sophie Dubois-Lefèvre.",
        ["Anne-Sophie", "Dubois-Lefèvre"],
    ),
    (
        "non-Anglo",
        "The lease is signed by Nguyen Thi Huong and Babajide Adeyemi.",
        ["Huong", "Adeyemi"],
    ),
    # addresses in many formats
    (
        "apt + street",
        "Send it to Apt. 12C, 480 Maple Grove Road, Dayton",
        ["480 Maple Grove Road", "12C"],
    ),
    (
        "suite",
        "Our office moved to Suite 210, 77 Harbor Boulevard.",
        ["77 Harbor Boulevard", "210"],
    ),
    ("studio", "I rent Studio 5, 19 Canal Walk now.", ["19 Canal Walk"]),
    ("dutch street", "Mijn adres is Prinsengracht 263, 1016 GV Amsterdam.", ["Prinsengracht 263"]),
    ("french street", "Livraison au 14 rue des Lilas, 69003 Lyon.", ["14 rue des Lilas"]),
    ("spanish street", "Vivo en Calle de Alcalá 45, Madrid.", ["Calle de Alcalá 45"]),
    ("portuguese street", "Morada: Avenida da Liberdade 110, Lisboa", ["Avenida da Liberdade 110"]),
    ("foreign town", "She grew up in Tromsø and now lives in Gdańsk.", ["Tromsø", "Gdańsk"]),
    ("town in capitals", "SHIPPING TO: 9 HIGH STREET, CHELTENHAM", ["CHELTENHAM", "9 HIGH STREET"]),
    ("place in lower case", "we drove from valencia to bilbao last week", ["valencia", "bilbao"]),
    # e-mail inside URLs and query strings
    (
        "email in query",
        "GET /v1/reset?email=olga.petrova@mailbox.org&lang=en 200",
        ["olga.petrova@mailbox.org"],
    ),
    (
        "encoded email in URL",
        "POST https://api.example.com/u?mail=li.wei%40corp.example.cn 302",
        ["li.wei%40corp.example.cn"],
    ),
    # lower-case IBAN with spaces; dd/mm/yyyy birth date
    ("lower-case IBAN", "refund to nl91 abna 0417 1643 00 please", ["nl91 abna 0417 1643 00"]),
    ("dd/mm/yyyy DOB", "Date of birth: 23/07/1968, blood type O+", ["23/07/1968"]),
    ("dd/mm/yyyy born", "born 02/11/1975 in a small village", ["02/11/1975"]),
    # numbers of every validated type
    ("card", "card 5425 2334 3010 9903 exp 04/28", ["5425 2334 3010 9903"]),
    ("ssn", "SSN 219-09-9999 on the claim", ["219-09-9999"]),
    ("phone", "call +33 6 12 34 56 78 after lunch", ["+33 6 12 34 56 78"]),
    ("ip", "blocked 203.0.113.45 after five attempts", ["203.0.113.45"]),
]

PII_FREE = [
    "Model Z9Pro has a 120 Hz display and ships in three colours.",
    "The Aero5 Max weighs 410 grams and charges in 35 minutes.",
    "Release 4.2.1 fixes the export crash on startup.",
    "2025-06-01 10:42 INFO GET /health 200 3ms",
    "Invoice ORD-448812 for 129.90 EUR is due next week.",
    "Add the flour, stir, and bake for twenty minutes at 180 degrees.",
    "Queue depth 42 above threshold; autoscaler added 3 nodes.",
    '{"status": "ok", "retries": 3, "mode": "strict"}',
    "The committee meets every second Tuesday of the month.",
]


@pytest.mark.parametrize("label, text, values", LEAKS, ids=[c[0] for c in LEAKS])
def test_leak_category_is_scrubbed(
    scrubber: Scrubber, label: str, text: str, values: list[str]
) -> None:
    out = scrubber.scrub_text(text, tenant="t").text
    for value in values:
        assert value not in out, f"{label}: {value!r} survived in {out!r}"


@pytest.mark.parametrize("text", PII_FREE)
def test_pii_free_text_is_unchanged(scrubber: Scrubber, text: str) -> None:
    assert scrubber.scrub_text(text, tenant="t").text == text
