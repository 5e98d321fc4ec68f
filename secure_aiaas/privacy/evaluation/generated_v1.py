"""The project's first evaluation set ("generated v1"), generated deterministically from a seed.

Its rules were written against this generator, so every split here counts as tuned on; the
independent sets are ``faker_sets`` (dev and frozen). Word lists: ``data/generated_v1_banks.json``.

Four splits that share nothing but the entity formats (disjoint names, places, streets and
templates, different seeds): ``tune`` (what the pipeline was improved on); ``dev`` and ``dev2``
(each first written as the held-out split, measured, and then its failures fixed, so both
count as tuned on); ``heldout`` (written after tuning ended; measured, never tuned on).

Each sample holds the text and the PII values in it (type and offsets); PII-free samples have
none. Nothing here is real personal data: names and places are common ones, numbers are
random but valid (Luhn, IBAN mod-97, SSN area rules, phonenumbers' validity).
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import phonenumbers

from secure_aiaas.privacy.evaluation.samples import Gold, Sample

Split = Literal["tune", "dev", "dev2", "heldout"]
SEEDS: dict[str, int] = {"tune": 1234, "dev": 98765, "dev2": 424242, "heldout": 777013}
_SLOT = re.compile(r"\{([A-Z_0-9]+)(?::([a-z]+))?\}")


@dataclass(frozen=True)
class Bank:
    """Everything one split draws from."""

    first_names: list[str]
    last_names: list[str]
    cities: list[str]
    streets: list[str]
    email_domains: list[str]
    phone_regions: list[str]
    iban_countries: list[tuple[str, int]]
    products: list[str]
    templates: dict[str, list[str]]
    clean_templates: list[str]
    json_templates: list[str]


def _load_banks() -> tuple[list[str], dict[str, Bank]]:
    raw = json.loads(
        (Path(__file__).parent / "data" / "generated_v1_banks.json").read_text("utf-8")
    )
    banks = {}
    for name, fields in raw["banks"].items():
        fields["iban_countries"] = [tuple(c) for c in fields["iban_countries"]]
        banks[name] = Bank(**fields)
    return raw["months"], banks


MONTHS, BANKS = _load_banks()


class _Filler:
    """Draws values for one sample; a person drawn once keeps its name across slots."""

    def __init__(self, rng: random.Random, bank: Bank) -> None:
        self.rng = rng
        self.bank = bank
        self.first = rng.choice(bank.first_names)
        self.last = rng.choice(bank.last_names)
        self.first2 = rng.choice(bank.first_names)
        self.last2 = rng.choice(bank.last_names)

    def value(self, slot: str, mod: str | None) -> tuple[str, str | None]:
        """Return (text, entity type or None for non-PII filler)."""
        r, b = self.rng, self.bank
        if slot == "PERSON":
            name = {"first": self.first, "last": self.last}.get(
                mod or "", f"{self.first} {self.last}"
            )
            if mod == "lower":
                name = f"{self.first} {self.last}".lower()
            return name, "PERSON"
        if slot == "PERSON2":
            name = f"{self.first2} {self.last2}" if mod != "first" else self.first2
            return (name.lower() if mod == "lower" else name), "PERSON"
        if slot == "CITY":
            return r.choice(b.cities), "LOCATION"
        if slot == "ADDRESS":
            return f"{r.randint(1, 399)} {r.choice(b.streets)}", "LOCATION"
        if slot == "EMAIL":
            user = f"{self.first}.{self.last}".lower()
            user = unicodedata.normalize("NFKD", user).encode("ascii", "ignore").decode()
            user = user.replace("'", "").replace(" ", "") or "user"
            return f"{user}{r.randint(1, 99)}@{r.choice(b.email_domains)}", "EMAIL_ADDRESS"
        if slot == "PHONE":
            return _phone(r, b.phone_regions), "PHONE_NUMBER"
        if slot == "IBAN":
            return _iban(r, b.iban_countries, grouped=r.random() < 0.6), "IBAN_CODE"
        if slot == "SSN":
            return _ssn(r), "US_SSN"
        if slot == "CARD":
            return _card(r), "CREDIT_CARD"
        if slot == "IP":
            return (
                f"{r.randint(11, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
                "IP_ADDRESS",
            )
        if slot == "DOB":
            y, m, d = r.randint(1940, 2004), r.randint(1, 12), r.randint(1, 28)
            fmt = r.choice(
                [
                    f"{y:04d}-{m:02d}-{d:02d}",
                    f"{d} {MONTHS[m - 1]} {y}",
                    f"{m:02d}/{d:02d}/{y:04d}",
                ]
            )
            return fmt, "DATE_OF_BIRTH"
        # Non-PII filler: numbers, versions, ids that a naive pipeline mistakes for PII.
        if slot == "NUM":
            return str(r.randint(2, 90)), None
        if slot == "VERSION":
            return f"v{r.randint(1, 20)}.{r.randint(0, 9)}.{r.randint(0, 19)}", None
        if slot == "INVOICE":
            return (
                f"{r.choice(['INV', 'PO', 'ORD', 'TKT'])}-{r.randint(2019, 2026)}-{r.randint(1, 99999):05d}",
                None,
            )
        if slot == "HEX":
            return f"{r.getrandbits(48):012x}", None
        if slot == "TIME":
            return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}", None
        if slot == "PRODUCT":
            return r.choice(b.products), None
        raise ValueError(f"unknown slot {slot}")


def _fill(template: str, filler: _Filler, domain: str) -> Sample:
    out: list[str] = []
    gold: list[Gold] = []
    pos = 0
    cursor = 0
    for m in _SLOT.finditer(template):
        lit = template[cursor : m.start()]
        out.append(lit)
        pos += len(lit)
        text, etype = filler.value(m.group(1), m.group(2))
        if etype is not None:
            gold.append(Gold(etype, pos, pos + len(text)))
        out.append(text)
        pos += len(text)
        cursor = m.end()
    out.append(template[cursor:])
    return Sample(domain, "".join(out), tuple(gold))


def _json_sample(rng: random.Random, bank: Bank) -> Sample:
    """A JSON snippet whose string fields hold PII (keys are never PII)."""
    template = rng.choice(bank.json_templates)
    obj = json.loads(template)
    filler = _Filler(rng, bank)
    # Serialise with slot markers in place, then fill: offsets come out right for free.
    return _fill(json.dumps(obj, ensure_ascii=False), filler, "json")


def generate(
    split: Split, n_pii: int = 300, n_clean: int = 150, seed: int | None = None
) -> list[Sample]:
    """Generate ``n_pii`` samples with PII and ``n_clean`` PII-free ones for a split."""
    bank = BANKS[split]
    rng = random.Random(SEEDS[split] if seed is None else seed)
    samples: list[Sample] = []
    domains = sorted(bank.templates)
    for i in range(n_pii):
        domain = domains[i % len(domains)]
        if domain == "json":
            samples.append(_json_sample(rng, bank))
            continue
        samples.append(_fill(rng.choice(bank.templates[domain]), _Filler(rng, bank), domain))
    for _ in range(n_clean):
        samples.append(_fill(rng.choice(bank.clean_templates), _Filler(rng, bank), "clean"))
    return samples


# --- valid-looking identifiers -------------------------------------------------------------


def _luhn_digit(partial: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _card(r: random.Random) -> str:
    prefix, length = r.choice(
        [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)]
    )
    body = prefix + "".join(str(r.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    number = body + _luhn_digit(body)
    style = r.random()
    if length == 15:
        parts = [number[:4], number[4:10], number[10:]]
    else:
        parts = [number[i : i + 4] for i in range(0, 16, 4)]
    if style < 0.4:
        return " ".join(parts)
    if style < 0.7:
        return "-".join(parts)
    return number


def _iban(r: random.Random, countries: list[tuple[str, int]], grouped: bool) -> str:
    country, length = r.choice(countries)
    # Letters where the country's format has them (bank codes), digits elsewhere.
    letters = {"GB": range(4), "NL": range(4), "IT": range(1)}.get(country, range(0))
    bban = "".join(
        r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") if i in letters else str(r.randint(0, 9))
        for i in range(length - 4)
    )
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if grouped else iban


def _ssn(r: random.Random) -> str:
    area = r.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"


def _phone(r: random.Random, regions: list[str]) -> str:
    for _ in range(200):
        region = r.choice(regions)
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is None:
            continue
        national = str(example.national_number)
        # Keep the leading digits (they carry the number type) and randomise the rest.
        keep = max(2, len(national) // 2)
        digits = national[:keep] + "".join(
            str(r.randint(0, 9)) for _ in range(len(national) - keep)
        )
        num = phonenumbers.parse(f"+{example.country_code}{digits}")
        if not phonenumbers.is_valid_number(num):
            continue
        if region == "US" and r.random() < 0.5:
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    raise RuntimeError("could not draw a valid phone number")
