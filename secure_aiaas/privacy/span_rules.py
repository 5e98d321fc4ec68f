"""Steps after Presidio's analysis that lift recall without touching PII-free text.

- key hints: a JSON field called ``name`` or ``city`` says what its value is;
- propagation: a name found once is scrubbed everywhere in the same text;
- extension: "Amina" tagged by NER in "Amina Owusu" grows to the whole name;
- overlap resolution: one span per region, so offsets and counts are unambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from secure_aiaas.privacy.name_words import (
    CAP_WORD,
    COMMON_WORDS,
    NAME_WORD,
    TECH_WORDS,
    is_name_candidate,
    words,
)

_NAME_VALUE = re.compile(rf"^\s{{0,8}}{NAME_WORD}(?:[ \t]{{1,8}}{NAME_WORD}){{0,3}}\s{{0,8}}$")
_PLACE_VALUE = re.compile(
    rf"^\s{{0,8}}(?:\d{{1,5}}[A-Za-z]?,?\s{{1,8}})?{NAME_WORD}(?:[ \t,]{{1,8}}{NAME_WORD}){{0,5}}\s{{0,8}}$"
)
_NEXT_CAP = re.compile(rf"[ \t]{{1,8}}({CAP_WORD})")
PERSON_KEYS = words(
    """
    name full_name fullname first_name firstname last_name lastname surname given_name family_name
    display_name username user patient customer client payee payer cardholder card_holder holder
    employee contact owner author sender recipient assignee reporter requester next_of_kin
    """
)
PLACE_KEYS = words(
    """
    address street street_address city town location home_address billing_address shipping_address
    residence birthplace
    """
)


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])")  # "givenName" -> "given_Name"


@dataclass
class Span:
    """A detection on the original text."""

    entity_type: str
    start: int
    end: int
    score: float
    source: str = ""


def key_hint(key: str | None, value: str) -> Span | None:
    """A whole-value span when the JSON key names a person or a place and the value fits."""
    if key is None:
        return None
    k = re.sub(r"[^a-z0-9]+", "_", _CAMEL_BOUNDARY.sub("_", key).lower()).strip("_")
    if k in PERSON_KEYS and _NAME_VALUE.match(value):
        return Span("PERSON", 0, len(value.rstrip()), 0.7)
    if k in PLACE_KEYS and _PLACE_VALUE.match(value):
        return Span("LOCATION", 0, len(value.rstrip()), 0.7)
    return None


# "user=Veer", "name=Ana%20Lima", "city=Porto" in log lines and query strings: the parameter
# name says what the value is, as a JSON key does.
_KEY_VALUE = re.compile(r"(?<![A-Za-z0-9_])([A-Za-z_]{2,20})=([^\s&;,\"'<>]{2,60})")


def key_value_pairs(text: str) -> list[Span]:
    """Spans for ``key=value`` pairs whose key names a person or a place."""
    if "=" not in text:
        return []
    out = []
    for m in _KEY_VALUE.finditer(text):
        value = m.group(2).replace("%20", " ").replace("+", " ")
        hint = key_hint(m.group(1), value)
        if hint is not None:  # the whole encoded value, whatever its decoded length
            out.append(Span(hint.entity_type, m.start(2), m.end(2), 0.6, "key_value_pairs"))
    return out


def is_tech_text(text: str) -> bool:
    """True when the text is about software (a lone capitalised word there is a product)."""
    return any(w in TECH_WORDS for w in re.findall(r"[a-z]+", text.lower()))


def is_camel_case(word: str) -> bool:
    """``MongoDB``, ``SonarQube``: an inner capital that no name prefix (Mc, Mac, O', De…) explains."""
    return bool(_CAMEL.match(word.strip()))


_TOKEN = re.compile(r"\S+")
_CODE = re.compile(r"^(?:v?\d+(?:\.\d+)+|[A-Za-z]{2,}-\d[\w-]*|\d[\w:.-]*)$")
_NEAR_CODE = re.compile(r"^(?:v\d+(?:\.\d+)+|\d+\.\d+\.\d+|[A-Z]{2,}-\d[\w-]*)$")
_CAMEL = re.compile(r"^(?!Mc|Mac|O'|De|Di|La|Le|Van)[A-Z][a-z]+[A-Z]")
_TECH_NOUNS = words(
    """
    cluster clusters node nodes host hosts server servers service services instance instances pod
    pods database db api apis version release build builds deployment container containers job jobs
    queue broker index backend frontend plugin module library package driver dashboard pipeline
    region regions zone zones datacenter patch update
    """
)
_DETERMINERS = words(
    """
    the a an this that our your their its
    """
)
NER_SOURCE = "FilteredSpacyRecognizer"


def filter_ner(text: str, spans: list[Span]) -> list[Span]:
    """Drop NER spans that are codes, log levels or software names, not people or places.

    The small model tags "09:51:30 INFO", "Order INV-2025-64110" or "Upgrade Redis" as PERSON.
    Tokens with digits, all-capital tokens and CamelCase are trimmed; a span next to a version or
    an identifier, before a word like "cluster", or after "the" is software, not a person.
    """
    kept: list[Span] = []
    tech_text = any(w in TECH_WORDS for w in re.findall(r"[a-z]+", text.lower()))
    for s in spans:
        if s.source != NER_SOURCE or s.entity_type not in ("PERSON", "LOCATION"):
            kept.append(s)
            continue
        tokens = [m for m in _TOKEN.finditer(text, s.start, s.end)]
        good = [
            m
            for m in tokens
            if not (
                _CODE.match(m.group())
                or any(c.isdigit() for c in m.group())
                or (m.group().isupper() and len(m.group()) > 1)
                or _CAMEL.match(m.group())
            )
        ]
        while (
            good and good[0].group().lower() in COMMON_WORDS
        ):  # "Call Zoë": the verb is not the name
            good = good[1:]
        if not good:
            continue
        before = text[: good[0].start()].split()[-2:]
        after = text[good[-1].end() :].split()[:3]
        near = [
            w.strip(",.;:()")
            for w in before[-1:] + [a for a in after if a.lower() not in ("to", "from")][:1]
        ]
        if any(_NEAR_CODE.match(w) for w in near if w):
            continue
        if after and after[0].strip(",.;:").lower() in _TECH_NOUNS:
            continue
        # "the Grafana dashboard" is software; "the Lagos clinic" is a place, so persons only.
        # "the Grafana", "the last Keycloak patch": names rarely follow a determiner.
        if (
            s.entity_type == "PERSON"
            and len(good) == 1
            and (
                (before and before[-1].lower() in _DETERMINERS)
                or (len(before) == 2 and before[0].lower() in _DETERMINERS and before[1].islower())
            )
        ):
            continue
        if (
            len(good) == 1 and tech_text
        ):  # a lone word in a text about software: a product, not a person
            continue
        kept.append(Span(s.entity_type, good[0].start(), good[-1].end(), s.score, s.source))
    return kept


_TRAILING = re.compile(r"(?:['’]s|['’]|[\s.,;:!?)\]\"-])+$")


def trim(text: str, spans: list[Span]) -> list[Span]:
    """Drop possessives and trailing punctuation: "Maria Lopez's" is the value "Maria Lopez"."""
    for s in spans:
        if s.entity_type in ("PERSON", "LOCATION"):
            m = _TRAILING.search(text, s.start, s.end)
            if m and m.start() > s.start:
                s.end = m.start()
    return spans


def extend_names(text: str, spans: list[Span]) -> list[Span]:
    """Grow PERSON spans over directly following capitalised name words."""
    for s in spans:
        if s.entity_type != "PERSON":
            continue
        for _ in range(2):
            m = _NEXT_CAP.match(text, s.end)
            if not m or not is_name_candidate(m.group(1)):
                break
            s.end = m.end(1)
    return spans


_CITY_AFTER = re.compile(rf",[ \t]{{0,8}}({CAP_WORD}(?:[ \t]{{1,8}}{CAP_WORD})?)")


def extend_addresses(text: str, spans: list[Span]) -> list[Span]:
    """ "12 Oak Lane, Porto": the words after a street address's comma are its town."""
    for s in spans:
        if s.entity_type == "LOCATION" and s.source == "StreetAddressRecognizer":
            m = _CITY_AFTER.match(text, s.end)
            if m and all(is_name_candidate(w) for w in m.group(1).split()):
                s.end = m.end(1)
    return spans


_SECONDARY_BEFORE = re.compile(
    r"(?i:\b(?:apt|apartment|suite|ste|unit|flat|studio|room|rm|floor|fl|bldg|building|block|"
    r"p\.?\s?o\.?\s?box|box))\.?[ \t]{0,8}(?:#?[A-Za-z0-9-]{1,6})?[ \t,]{0,8}$"
)


def extend_secondary(text: str, spans: list[Span]) -> list[Span]:
    """ "Apt. 4B, 221 Elm Street": an apartment, suite or studio just before an address is part of it."""
    for s in spans:
        if s.entity_type == "LOCATION" and s.start > 0:
            window = max(0, s.start - 40)
            m = _SECONDARY_BEFORE.search(text, window, s.start)
            if m:
                s.start = m.start()
    return spans


_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_DATE_IN_PARENS = re.compile(
    rf"[ \t]{{0,8}}\([ \t]{{0,8}}((?:19|20)\d{{2}}-[01]\d-[0-3]\d|[0-3]?\d[/.][0-3]?\d[/.](?:19|20)\d{{2}}|"
    rf"[0-3]?\d[ \t]{{1,8}}{_MONTH}[ \t]{{1,8}}(?:19|20)\d{{2}}|{_MONTH}[ \t]{{1,8}}[0-3]?\d,?[ \t]{{1,8}}(?:19|20)\d{{2}})"
    r"[ \t]{0,8}[),]"
)


def dates_after_names(text: str, spans: list[Span]) -> list[Span]:
    """ "Mrs. Lewis (04/24/2003)": a full date in brackets right after a name is a birth date."""
    extra = []
    for s in spans:
        if s.entity_type == "PERSON":
            m = _DATE_IN_PARENS.match(text, s.end)
            if m:
                extra.append(Span("DATE_OF_BIRTH", m.start(1), m.end(1), 0.6, "dates_after_names"))
    return spans + extra


def propagate(
    text: str, spans: list[Span], types: frozenset[str] = frozenset({"PERSON", "LOCATION"})
) -> list[Span]:
    """Add every other occurrence of the words of a detected name or place."""
    words: dict[str, Span] = {}
    for s in spans:
        # Street addresses (with digits) would spread "Street" everywhere: names and places only.
        if s.entity_type in types and not any(c.isdigit() for c in text[s.start : s.end]):
            for w in re.finditer(NAME_WORD, text[s.start : s.end]):
                if len(w.group()) >= 3 and is_name_candidate(w.group()):
                    words.setdefault(w.group().casefold(), s)
    if not words:
        return spans
    pattern = re.compile(
        r"(?<![^\W_])("
        + "|".join(sorted(map(re.escape, words), key=len, reverse=True))
        + r")(?![^\W_])",
        re.IGNORECASE,
    )
    extra = [
        Span(
            words[m.group(1).casefold()].entity_type,
            m.start(1),
            m.end(1),
            words[m.group(1).casefold()].score,
        )
        for m in pattern.finditer(text)
    ]
    return spans + extra


def allow_pattern(allow: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive regex over all allow-listed terms (compiled once per profile)."""
    if not allow:
        return None
    return re.compile("|".join(sorted(map(re.escape, allow), key=len, reverse=True)), re.IGNORECASE)


def drop_allowed(text: str, spans: list[Span], allow: re.Pattern[str] | None) -> list[Span]:
    """Drop spans that lie within an occurrence of an allow-listed term."""
    if allow is None or not spans:
        return spans
    regions = [(m.start(), m.end()) for m in allow.finditer(text)]
    if not regions:
        return spans
    return [s for s in spans if not any(a <= s.start and s.end <= b for a, b in regions)]


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Merge overlapping spans into their union; the type of the highest score wins."""
    merged: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and s.start < merged[-1].end:
            last = merged[-1]
            if s.score > last.score:
                last.entity_type, last.score = s.entity_type, s.score
            last.end = max(last.end, s.end)
        else:
            merged.append(Span(s.entity_type, s.start, s.end, s.score))
    return merged
