"""Each operator: redact, typed placeholder, mask, keyed hash per tenant, reversible encryption."""

from __future__ import annotations

import re

import pytest

from secure_aiaas.errors import CryptoError, PrivacyError
from secure_aiaas.privacy import PrivacyPolicy, Profile, Scrubber, TenantKeys, restore

TEXT = "Dear Maria Lopez, Maria Lopez's card 4111 1111 1111 1111 was declined. Ask John Smith."
HASH_KEY = b"h" * 32
ENC_KEY = bytes(range(32))


def _policy(operator: str) -> PrivacyPolicy:
    profile = Profile(name="p", thresholds={"PERSON": 0.5, "CREDIT_CARD": 0.5}, operator=operator)
    return PrivacyPolicy({"p": profile}, (("*", "*", "p"),))


def _scrub(
    scrubber: Scrubber, operator: str, tenant: str = "acme", keys: TenantKeys | None = None
) -> str:
    return scrubber.using(_policy(operator)).scrub_text(TEXT, tenant=tenant, keys=keys).text


def test_redact(scrubber: Scrubber) -> None:
    out = _scrub(scrubber, "redact")
    assert "Maria" not in out and "4111" not in out and "John" not in out
    assert out.count("<PERSON>") == 3 and "<CREDIT_CARD>" in out


def test_placeholder_consistent_within_request(scrubber: Scrubber) -> None:
    out = _scrub(scrubber, "placeholder")
    assert out.count("<PERSON_1>") == 2 and out.count("<PERSON_2>") == 1
    assert out.index("<PERSON_1>") < out.index("<PERSON_2>")  # numbered in reading order


def test_placeholder_consistent_across_texts_of_one_request(scrubber: Scrubber) -> None:
    results = scrubber.using(_policy("placeholder")).scrub_texts(
        ["Dear Maria Lopez,", "Thanks Maria Lopez!"], tenant="t"
    )
    assert "<PERSON_1>" in results[0].text and "<PERSON_1>" in results[1].text


def test_mask_keeps_shape(scrubber: Scrubber) -> None:
    out = _scrub(scrubber, "mask")
    assert "**** **** **** ****" in out and "***** *****" in out


def test_keyed_hash_is_per_tenant_and_stable(scrubber: Scrubber) -> None:
    keys = TenantKeys(hash_key=HASH_KEY)
    a1, a2 = _scrub(scrubber, "hash", "acme", keys), _scrub(scrubber, "hash", "acme", keys)
    b = _scrub(scrubber, "hash", "globex", keys)
    assert a1 == a2 and "Maria" not in a1
    tags = re.findall(r"<PERSON:([0-9a-f]{16})>", a1)
    assert len(tags) == 3 and tags[0] == tags[1] != tags[2]
    assert (
        re.findall(r"<PERSON:([0-9a-f]{16})>", b)[0] != tags[0]
    )  # another tenant cannot link values
    other_key = _scrub(scrubber, "hash", "acme", TenantKeys(hash_key=b"k" * 32))
    assert other_key != a1


def test_encrypt_round_trips_for_the_tenant_only(scrubber: Scrubber) -> None:
    out = _scrub(scrubber, "encrypt", "acme", TenantKeys(encryption_key=ENC_KEY))
    assert "Maria" not in out and "4111" not in out and ":enc:" in out
    assert restore(out, key=ENC_KEY, tenant="acme") == TEXT
    with pytest.raises(CryptoError):
        restore(out, key=ENC_KEY, tenant="globex")  # bound to the tenant
    with pytest.raises(CryptoError):
        restore(out, key=b"x" * 32, tenant="acme")


@pytest.mark.parametrize("operator", ["hash", "encrypt"])
def test_keyed_operator_without_key_refuses(scrubber: Scrubber, operator: str) -> None:
    with pytest.raises(PrivacyError) as info:
        _scrub(scrubber, operator, keys=None)
    assert "Maria" not in str(info.value) and "Maria" not in info.value.public_message


def test_per_entity_operator_override(scrubber: Scrubber) -> None:
    profile = Profile(
        name="p",
        thresholds={"PERSON": 0.5, "CREDIT_CARD": 0.5},
        operator="redact",
        operators={"CREDIT_CARD": "mask"},
    )
    out = (
        scrubber.using(PrivacyPolicy({"p": profile}, (("*", "*", "p"),)))
        .scrub_text(TEXT, tenant="t")
        .text
    )
    assert "<PERSON>" in out and "**** **** **** ****" in out
