"""The scrubber's own bounds, checked before any work starts.

Every limit names itself in the error so the caller knows what to shrink. Size limits (characters,
texts, JSON leaves) raise errors that are also ``PayloadTooLargeError`` (413); the depth limit is a
plain ``InputError`` (422). The HTTP layer maps them by class; messages carry no input.
"""

from __future__ import annotations

from dataclasses import dataclass

from secure_aiaas.errors import InputError, PayloadTooLargeError


@dataclass(frozen=True)
class ScrubLimits:
    """Upper bounds on one scrub request (texts of a conversation count together)."""

    max_text_chars: int = 100_000
    max_request_chars: int = 1_000_000
    max_texts: int = 1_024
    max_json_depth: int = 32
    max_json_leaves: int = 10_000  # strings, numbers and keys together

    def __post_init__(self) -> None:
        for name in (
            "max_text_chars",
            "max_request_chars",
            "max_texts",
            "max_json_depth",
            "max_json_leaves",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def check_texts(self, texts: list[str]) -> None:
        """Raise the matching ``ScrubLimitError`` if ``texts`` exceed a bound."""
        if len(texts) > self.max_texts:
            raise TooManyTextsError("max_texts", self.max_texts)
        total = 0
        for text in texts:
            if len(text) > self.max_text_chars:
                raise TextTooLongError("max_text_chars", self.max_text_chars)
            total += len(text)
        if total > self.max_request_chars:
            raise RequestTooLargeError("max_request_chars", self.max_request_chars)


class ScrubLimitError(InputError):
    """Base of the bound violations; ``limit`` and ``maximum`` name what was exceeded."""

    code = "scrub_limit_exceeded"

    def __init__(self, limit: str, maximum: int) -> None:
        self.limit, self.maximum = limit, maximum
        super().__init__(f"input exceeds the scrubber's {limit} ({maximum})")


class TextTooLongError(ScrubLimitError, PayloadTooLargeError):
    code = "scrub_text_too_long"


class RequestTooLargeError(ScrubLimitError, PayloadTooLargeError):
    code = "scrub_request_too_large"


class TooManyTextsError(ScrubLimitError, PayloadTooLargeError):
    code = "scrub_too_many_texts"


class JsonTooLargeError(ScrubLimitError, PayloadTooLargeError):
    code = "scrub_json_too_large"


class JsonTooDeepError(ScrubLimitError):
    code = "scrub_json_too_deep"
