"""Restoring placeholders in answers: what matches, what must not, and every chunk boundary."""

from __future__ import annotations

import itertools
import random

import pytest

from secure_aiaas.llm.restore import PlaceholderMap, Restorer

VALUES = {
    "<PERSON_1>": "Alice Martin",
    "<PERSON_2>": "Bob",
    "<EMAIL_ADDRESS_1>": "a@example.org",
    "<PERSON_10>": "Tenth Person",
}


def restorer() -> Restorer:
    return Restorer(PlaceholderMap(VALUES))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Dear <PERSON_1>,", "Dear Alice Martin,"),
        ("Dear **PERSON_1**,", "Dear Alice Martin,"),
        ("Dear [person_1].", "Dear Alice Martin."),
        ("Dear *<PERSON_1>*!", "Dear Alice Martin!"),
        ("Dear <**PERSON_1**>", "Dear Alice Martin"),
        ("Hi `PERSON_2` and __PERSON_1__", "Hi Bob and Alice Martin"),
        ("Hi {PERSON_2} {{PERSON_1}}", "Hi Bob Alice Martin"),
        ("Hi PERSON 2 and PERSON-1", "Hi Bob and Alice Martin"),
        ("Mail EMAIL\\_ADDRESS\\_1 or EMAIL ADDRESS 1", "Mail a@example.org or a@example.org"),
        ("Hi Person1, Person_2", "Hi Alice Martin, Bob"),
        ("Hi <PERSON_1", "Hi Alice Martin"),  # a lone bracket left by the model
        ("Hi PERSON_10 not PERSON_1", "Hi Tenth Person not Alice Martin"),
        ("(PERSON_1)", "(Alice Martin)"),  # parentheses are prose: kept
    ],
)
def test_tolerant_matches(answer: str, expected: str) -> None:
    assert restorer().restore(answer) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "person 1 and person 2 went home",  # lower-case words: ordinary prose
        "PERSON_12 and PERSON_3 are not ours",  # other numbers, an unknown placeholder
        "XPERSON_1 and PERSON_1X",  # inside longer words
        "EMAIL_1",  # another type
    ],
)
def test_what_must_not_match(answer: str) -> None:
    assert restorer().restore(answer) == answer


def test_counts_by_type_and_no_value_in_repr() -> None:
    mapping = PlaceholderMap(VALUES)
    r = Restorer(mapping)
    r.restore("<PERSON_1> <PERSON_2> <EMAIL_ADDRESS_1> <PERSON_9>")
    assert dict(r.counts) == {"PERSON": 2, "EMAIL_ADDRESS": 1}
    for shown in (repr(mapping), str(mapping), repr(r.counts)):
        assert not any(v in shown for v in VALUES.values())
    assert mapping.placeholders() == sorted(VALUES)


def test_a_value_that_looks_like_a_placeholder_is_not_rescanned() -> None:
    r = Restorer(PlaceholderMap({"<PERSON_1>": "<PERSON_2>", "<PERSON_2>": "Bob"}))
    assert r.restore("<PERSON_1> <PERSON_2>") == "<PERSON_2> Bob"


def test_keys_in_another_format_match_exactly() -> None:
    r = Restorer(PlaceholderMap({"[[name]]": "Eve"}))
    assert r.restore("Hi [[name]], [[NAME]]") == "Hi Eve, [[NAME]]"


ANSWERS = [
    "Dear **PERSON_1**, please write to <EMAIL_ADDRESS_1>. Regards, [PERSON_2]",
    "PERSON_10 met PERSON_1 and person 1; <PERSON_2>",
    "Ends with a placeholder <PERSON_1>",
    "Ends with a partial <PERS",
    "Escaped EMAIL\\_ADDRESS\\_1 and *<PERSON_2>*.",
]


def stream(text: str, cuts: list[int]) -> str:
    r = restorer().stream()
    bounds = [0, *cuts, len(text)]
    out = [r.push(text[a:b]) for a, b in zip(bounds, bounds[1:])]
    out.append(r.flush())
    return "".join(out)


@pytest.mark.parametrize("answer", ANSWERS)
def test_streaming_equals_restoring_the_whole_answer_at_every_boundary(answer: str) -> None:
    expected = restorer().restore(answer)
    for cut in range(len(answer) + 1):  # every single boundary
        assert stream(answer, [cut]) == expected, cut
    for a, b in itertools.combinations(range(0, len(answer) + 1, 3), 2):  # pairs of boundaries
        assert stream(answer, [a, b]) == expected, (a, b)
    assert stream(answer, list(range(1, len(answer)))) == expected  # one character at a time


def test_streaming_random_chunkings() -> None:
    rng = random.Random(14)
    for answer in ANSWERS:
        expected = restorer().restore(answer)
        for _ in range(200):
            cuts = sorted(rng.sample(range(1, len(answer)), rng.randint(1, 8)))
            assert stream(answer, cuts) == expected


def test_streaming_holds_back_only_what_could_still_be_a_placeholder() -> None:
    r = restorer().stream()
    assert r.push("Hello wor") == "Hello wor"
    assert r.push("ld, **PER") == "ld, "
    assert r.push("SON_1** and") == "Alice Martin and"
    assert r.push(" PERSON_1") == " "  # complete, but PERSON_1x / PERSON_10 may follow
    assert r.flush() == "Alice Martin"


def test_an_empty_mapping_passes_text_through() -> None:
    r = Restorer(PlaceholderMap({})).stream()
    assert r.push("<PERSON_1> **x") == "<PERSON_1> **x"


def test_cost_grows_linearly_with_the_answer_and_not_with_the_mapping() -> None:
    import time

    many = PlaceholderMap(
        {f"<PERSON_{i}>": f"name {i}" for i in range(5000)} | {"<US_DRIVER_LICENSE_1>": "D1"}
    )

    def seconds(text: str, mapping: PlaceholderMap) -> float:
        best = float("inf")
        for _ in range(3):
            r = Restorer(mapping)
            started = time.process_time()  # CPU: a parallel run's neighbours do not count
            r.restore(text)
            stream = r.stream()
            for i in range(0, len(text), 7):
                stream.push(text[i : i + 7])
            stream.flush()
            best = min(best, time.process_time() - started)
        return best

    # Prose that keeps the pattern busy: words and numbers, separators, near-misses.
    unit = "the quick brown fox PERSON 12 jumps over person_9999x lazy DRIVER LICENSE 3 dog "
    small, large = unit * 100, unit * 400
    assert seconds(large, many) / seconds(small, many) < 8  # 4x the text: about 4x the time
    few = PlaceholderMap({"<PERSON_1>": "x"})
    assert seconds(large, many) / seconds(large, few) < 4  # 5000 placeholders cost ~ one
