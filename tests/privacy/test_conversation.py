"""A conversation is one request: one placeholder map, returned to trusted code as a value."""

from __future__ import annotations

import logging

import pytest

from secure_aiaas.privacy import PlaceholderMap, Scrubber

MESSAGES = [
    "Hi, I'm Tomasz Wiśniewski, my email is tomasz.w@example.pl",
    "Tomasz Wiśniewski again: please also cc Aiyana Redcloud.",
    "Thanks Aiyana Redcloud!",
]


def test_same_value_same_placeholder_in_every_message(scrubber: Scrubber) -> None:
    convo = scrubber.scrub_conversation(MESSAGES, tenant="t")
    texts = [r.text for r in convo.results]
    assert "<PERSON_1>" in texts[0] and "<PERSON_1>" in texts[1]
    assert "<PERSON_2>" in texts[1] and "<PERSON_2>" in texts[2]
    assert convo.placeholders["<PERSON_1>"] == "Tomasz Wiśniewski"
    assert convo.placeholders["<EMAIL_ADDRESS_1>"] == "tomasz.w@example.pl"


def test_placeholders_restore_an_answer(scrubber: Scrubber) -> None:
    convo = scrubber.scrub_conversation(MESSAGES, tenant="t")
    answer = "Dear <PERSON_1>, I have copied <PERSON_2>. <UNKNOWN_9> stays."
    assert convo.placeholders.restore(answer) == (
        "Dear Tomasz Wiśniewski, I have copied Aiyana Redcloud. <UNKNOWN_9> stays."
    )


def test_map_never_shows_values_in_repr_or_logs(
    scrubber: Scrubber, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        convo = scrubber.scrub_conversation(MESSAGES, tenant="t")
        logging.getLogger("test").info("result %r %s", convo, convo.placeholders)
    for value in ("Tomasz", "Aiyana", "tomasz.w@example.pl"):
        assert value not in repr(convo) and value not in str(convo.placeholders)
        assert value not in caplog.text


def test_separate_requests_do_not_share_numbers(scrubber: Scrubber) -> None:
    a = scrubber.scrub_conversation(["Dear Ines Moreau,"], tenant="t")
    b = scrubber.scrub_conversation(["Dear Kwame Mensah,"], tenant="t")
    assert a.placeholders["<PERSON_1>"] != b.placeholders["<PERSON_1>"]
    assert isinstance(a.placeholders, PlaceholderMap) and len(a.placeholders) == 1
