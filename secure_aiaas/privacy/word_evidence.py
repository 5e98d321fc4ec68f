"""Names and places from the PII model's per-word probabilities, with a threshold per context.

The model's own spans need its top label at ≥ 0.5 on the first sub-token. A lone first name
or town in lower-case chat ("paid styrger back", "owe johann 20 for the hotel") often gets
less, while the model still puts clearly more probability on a name or a place there than on
any ordinary word. The model is uncased (its tokenizer lower-cases), so case says nothing to
it; case and the English lexicon say a lot to us about how likely a word is a name at all.

So each word gets P(name) and P(place) (the highest over its sub-tokens) and a threshold by
context, calibrated on the dev sets (mixed-dev, faker-dev, faker-frozen, geonames-frozen;
never on mixed-final) as the lowest value that adds no change to their PII-free texts:

- a lower-case word that is no English word (inflection-aware lexicon check, chat shorthand
  such as "lol", "pls", "hasnt" excluded): ``LOWER`` in a text written in lower case, but
  ``LOWER_IN_CASED_TEXT`` in one that starts with a capital: whoever capitalises sentences
  mostly capitalises names too, and a lower-case word there is more often a library
  ("read a CSV file with numpy");
- a capitalised or upper-case word that is no English word: ``CAPITALISED``;
- an English word: never here (the model's own spans still decide those).

Words in texts about software, words with digits, CamelCase and words inside URLs, paths,
e-mail addresses or ``key=value`` pairs are never evidence. Adjacent words of one type join.

Also here, persons by shape: an initial before a surname ("M. Lund", "J. R. de la Cruz"), and a
lower-case word that is no English word right after a verb that takes a person ("owe seda").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from secure_aiaas.privacy import span_rules as rules
from secure_aiaas.privacy.name_words import (
    CAP_WORD,
    COMMON_WORDS,
    INFORMAL_WORDS,
    NAME_PARTICLES,
    NAME_WORD,
)

SOURCE = "WordEvidence"
LOWER = 0.2
LOWER_IN_CASED_TEXT = 0.75
CAPITALISED = 0.1
SCORE = 0.6  # a context-rule score: passes the default profile's 0.5, not a strict 0.7

# A whitespace-delimited word (trailing punctuation allowed), not part of a URL, path, e-mail
# address, key=value pair or identifier.
_WORD = re.compile(rf"(?<![^\s(\"'“‘\[])({NAME_WORD})(?=[\s,.;:!?)\"'”’\]]|$)(?![.]\w)")
# Particles are followed by a space, except those ending in an apostrophe or hyphen ("d'",
# "al-"): one way to read every run of them, so no backtracking blow-up ("delladella…").
_SPACED = "|".join(
    sorted((re.escape(p) for p in NAME_PARTICLES if p[-1] not in "'-"), key=len, reverse=True)
)
_JOINED = "|".join(re.escape(p) for p in NAME_PARTICLES if p[-1] in "'-")
_INITIAL = re.compile(
    rf"(?<![\w.'’-])((?:[A-Z]\.[ \t]?){{1,3}}[ \t](?:(?:{_SPACED})[ \t]|{_JOINED}){{0,4}}"
    rf"({CAP_WORD}))(?![\w'’-])"
)
_LEAD_WORDS = frozenset(
    "to for from by with and attn c/o dear dr mr mrs ms prof cc per via of".split()
)


def is_english_word(word: str, lexicon: frozenset[str]) -> bool:
    """True for a word of the lexicon, or an inflected form of one ("retries", "failed")."""
    w = word.lower().strip(".,;:!?'\"()")
    if w in lexicon:
        return True
    for suffix, repl in (
        ("ies", "y"),
        ("es", ""),
        ("s", ""),
        ("ed", ""),
        ("ed", "e"),
        ("ing", ""),
        ("ing", "e"),
        ("er", ""),
        ("ly", ""),
    ):
        if w.endswith(suffix) and len(w) > len(suffix) + 2 and w[: -len(suffix)] + repl in lexicon:
            return True
    return False


def _never_a_name(word: str, lexicon: frozenset[str]) -> bool:
    low = word.lower()
    return (
        len(word) < 2
        or low in COMMON_WORDS
        or low in INFORMAL_WORDS
        or is_english_word(word, lexicon)
        or rules.is_camel_case(word)
    )


def word_evidence(
    text: str,
    person: Sequence[tuple[int, int, float]],
    place: Sequence[tuple[int, int, float]],
    lexicon: frozenset[str],
    context: str = "",
) -> list[rules.Span]:
    """PERSON/LOCATION spans for words the model gives enough name or place probability.

    ``person``/``place``: the model's (start, end, probability) per sub-token of ``text``;
    ``context``: text the words are judged with (a JSON field name), not searched.
    """
    if not person or rules.is_tech_text(text + " " + context):
        return []
    first_letter = next((c for c in text if c.isalpha()), "")
    lower = LOWER_IN_CASED_TEXT if first_letter.isupper() else LOWER
    by_start_person = _index(person)
    by_start_place = _index(place)
    out: list[rules.Span] = []
    for m in _WORD.finditer(text):
        word = m.group(1)
        if word[0].islower() and not word.islower():
            continue
        if _never_a_name(word, lexicon):
            continue
        threshold = lower if word.islower() else CAPITALISED
        p_name = _max_over(by_start_person, m.start(1), m.end(1))
        p_place = _max_over(by_start_place, m.start(1), m.end(1))
        if max(p_name, p_place) < threshold:
            continue
        etype = "PERSON" if p_name >= p_place else "LOCATION"
        last = out[-1] if out else None
        if last is not None and last.entity_type == etype and text[last.end : m.start(1)] == " ":
            last.end = m.end(1)
            continue
        out.append(rules.Span(etype, m.start(1), m.end(1), SCORE, SOURCE))
    return out


def initial_names(text: str, lexicon: frozenset[str]) -> list[rules.Span]:
    """ "M. Lund", "J. R. de la Cruz": one to three initials, particles, then a surname.

    The surname must not be an English word, unless a word that takes a person comes before
    the initials ("to E. Luna") or no lower-case word follows (so "plan B. Then we" is not).
    """
    if "." not in text:
        return []
    out: list[rules.Span] = []
    for m in _INITIAL.finditer(text):
        surname = m.group(2)
        if surname.lower() in COMMON_WORDS:
            continue
        if is_english_word(surname, lexicon):
            before = text[: m.start(1)].split()[-1:]
            after = text[m.end(2) :].lstrip(" \t")[:1]
            led = bool(before) and before[0].lower().strip(",:;") in _LEAD_WORDS
            if not led and (after.islower() or not after):
                continue
        out.append(rules.Span("PERSON", m.start(1), m.end(2), SCORE, "InitialName"))
    return out


_PERSON_VERBS = (
    "paid|pay|pays|paying|owe|owes|owed|owing|tell|tells|told|ask|asks|asked|thank|thanks|thanked|"
    "meet|meets|met|call|calls|called|text|texts|texted|ping|pinged|dm|message|messaged|email|"
    "emailed|remind|reminded|invite|invited|tag|tagged|miss|missed|hug|visit|visited|cc"
)
_AFTER_PERSON_VERB = re.compile(
    rf"(?<![\w'’-])(?i:{_PERSON_VERBS})[ \t]{{1,8}}({NAME_WORD})(?=[\s,.;:!?)]|$)"
)


def lower_after_person_verb(text: str, lexicon: frozenset[str]) -> list[rules.Span]:
    """ "paid styrger back", "tell kovu to wait": a lower-case word that is no English word, right
    after a verb that takes a person, is one, whatever the model's probability."""
    out: list[rules.Span] = []
    for m in _AFTER_PERSON_VERB.finditer(text):
        word = m.group(1)
        if word.islower() and not _never_a_name(word, lexicon) and not rules.is_tech_text(text):
            out.append(rules.Span("PERSON", m.start(1), m.end(1), SCORE, "PersonVerb"))
    return out


def _index(tokens: Sequence[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    return sorted(tokens)


def _max_over(tokens: list[tuple[int, int, float]], start: int, end: int) -> float:
    import bisect

    i = bisect.bisect_left(tokens, (start, -1, -1.0))
    while i > 0 and tokens[i - 1][1] > start:
        i -= 1
    best = 0.0
    while i < len(tokens) and tokens[i][0] < end:
        s, e, p = tokens[i]
        if e > start and p > best:
            best = p
        i += 1
    return best
