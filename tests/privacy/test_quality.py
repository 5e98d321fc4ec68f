"""Quality targets on the generated evaluation set, held-out split included."""

from __future__ import annotations

import pytest

from secure_aiaas.privacy import Scrubber
from secure_aiaas.privacy.evaluation.generated_v1 import generate
from secure_aiaas.privacy.evaluation.metrics import Report, evaluate, ours

RECALL_TARGET = 0.97
PII_FREE_CHANGED_MAX = 0.05
SPLITS = ["tune", "dev", "dev2", "heldout"]


@pytest.fixture(scope="module", params=["tune", "dev", "dev2", "heldout"])
def report(request: pytest.FixtureRequest, scrubber: Scrubber) -> Report:
    return evaluate("ours", request.param, generate(request.param), ours(scrubber))


def test_recall_over_all_pii_values(report: Report) -> None:
    assert report.recall >= RECALL_TARGET, report.summary()


def test_pii_free_texts_unchanged(report: Report) -> None:
    assert report.clean_changed_rate <= PII_FREE_CHANGED_MAX, report.summary()


def test_every_entity_type_measured(report: Report) -> None:
    assert set(report.total) == {
        "PERSON",
        "LOCATION",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
        "DATE_OF_BIRTH",
    }


@pytest.mark.parametrize("a, b", [(a, b) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1 :]])
def test_splits_share_no_names(a: str, b: str) -> None:
    from secure_aiaas.privacy.evaluation.generated_v1 import BANKS

    tune, held = BANKS[a], BANKS[b]
    assert not set(tune.first_names) & set(held.first_names)
    assert not set(tune.last_names) & set(held.last_names)
    assert not set(tune.cities) & set(held.cities)
    assert not {t for ts in tune.templates.values() for t in ts} & {
        t for ts in held.templates.values() for t in ts
    }
    assert not set(tune.clean_templates) & set(held.clean_templates)


def test_generator_is_deterministic() -> None:
    assert generate("heldout", 20, 5) == generate("heldout", 20, 5)
    assert generate("tune", 20, 5) != generate("heldout", 20, 5)


@pytest.mark.parametrize(
    "text, value",
    [
        ("hey it's maría jiménez, call me back", "maría jiménez"),
        ("Ticket from Søren about the outage", "Søren"),
        ("Wire it to DE89 3704 0044 0532 0130 00 today", "DE89 3704 0044 0532 0130 00"),
        ("SSN on file: 536-22-8901.", "536-22-8901"),
        ("Paid with 2221 0012 3412 3450 yesterday", "2221 0012 3412 3450"),
        ("Reach me on +44 7911 123456 after six", "+44 7911 123456"),
    ],
)
def test_hard_cases(scrubber: Scrubber, text: str, value: str) -> None:
    assert value not in scrubber.scrub_text(text, tenant="t").text


@pytest.mark.parametrize(
    "text",
    [
        "We have used it for two years.",
        "Build v14.6.1 fixed the crash.",
        "Invoice INV-2024-0042 is paid.",
    ],
)
def test_pii_free_examples_unchanged(scrubber: Scrubber, text: str) -> None:
    assert scrubber.scrub_text(text, tenant="t").text == text


@pytest.fixture(scope="module")
def faker_dev(scrubber: Scrubber) -> Report:
    from secure_aiaas.privacy.evaluation.faker_sets import generate as generate_faker

    return evaluate("ours", "faker-dev", generate_faker("faker-dev"), ours(scrubber))


def test_faker_dev_targets(faker_dev: Report) -> None:
    """The independent generator's dev split (tuned on; the frozen split is reported only by
    benchmarks/bench_privacy.py, once)."""
    by_type = faker_dev.recall_by_entity()
    assert faker_dev.recall >= RECALL_TARGET, faker_dev.summary()
    assert by_type["PERSON"] >= 0.95 and by_type["LOCATION"] >= 0.95, faker_dev.summary()
    assert faker_dev.clean_changed_rate <= PII_FREE_CHANGED_MAX, faker_dev.summary()
