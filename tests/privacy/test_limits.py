"""The scrubber's own bounds: a clear InputError naming the limit, raised before any work."""

from __future__ import annotations

import pytest

from secure_aiaas.errors import InputError, PayloadTooLargeError
from secure_aiaas.privacy import (
    JsonTooDeepError,
    JsonTooLargeError,
    RequestTooLargeError,
    Scrubber,
    ScrubLimitError,
    ScrubLimits,
    TextTooLongError,
    TooManyTextsError,
)

LIMITS = ScrubLimits(
    max_text_chars=100, max_request_chars=250, max_texts=4, max_json_depth=3, max_json_leaves=6
)


@pytest.fixture()
def bounded(scrubber: Scrubber) -> Scrubber:
    s = scrubber.using(scrubber._policy)
    s.limits = LIMITS
    return s


class Exploding:
    """A detector that fails the test if it is ever reached."""

    def detect(self, *args: object) -> object:
        raise AssertionError("detection ran although a limit was exceeded")


@pytest.mark.parametrize(
    "call, error, limit",
    [
        (lambda s: s.scrub_texts(["x"] * 5, tenant="t"), TooManyTextsError, "max_texts"),
        (lambda s: s.scrub_text("a" * 101, tenant="t"), TextTooLongError, "max_text_chars"),
        (
            lambda s: s.scrub_texts(["a" * 90] * 3, tenant="t"),
            RequestTooLargeError,
            "max_request_chars",
        ),
        (
            lambda s: s.scrub_json({"a": {"b": {"c": {"d": 1}}}}, tenant="t"),
            JsonTooDeepError,
            "max_json_depth",
        ),
        (lambda s: s.scrub_json(["a b"] * 7, tenant="t"), JsonTooLargeError, "max_json_leaves"),
        (
            lambda s: s.scrub_json({str(i): i for i in range(4)}, tenant="t"),
            JsonTooLargeError,
            "max_json_leaves",
        ),  # keys and numbers count as leaves
        (
            lambda s: s.scrub_conversation(["a" * 101], tenant="t"),
            TextTooLongError,
            "max_text_chars",
        ),
    ],
)
def test_limit_raises_named_input_error_before_work(
    bounded: Scrubber, call: object, error: type[ScrubLimitError], limit: str
) -> None:
    bounded._detector = Exploding()  # type: ignore[assignment]
    with pytest.raises(error) as info:
        call(bounded)  # type: ignore[operator]
    assert isinstance(info.value, InputError) and info.value.limit == limit
    assert limit in info.value.public_message and "a b" not in info.value.public_message


def test_size_limits_are_413_depth_is_422() -> None:
    assert issubclass(TextTooLongError, PayloadTooLargeError)
    assert issubclass(JsonTooLargeError, PayloadTooLargeError)
    assert not issubclass(JsonTooDeepError, PayloadTooLargeError)


def test_a_million_leaves_are_refused_quickly(scrubber: Scrubber) -> None:
    with pytest.raises(JsonTooLargeError):
        scrubber.scrub_json({"json": ["a b"] * 200_000}, tenant="t")


def test_deep_json_does_not_recurse(scrubber: Scrubber) -> None:
    deep: object = "x"
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(JsonTooDeepError):
        scrubber.scrub_json(deep, tenant="t")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_texts"):
        ScrubLimits(max_texts=0)
