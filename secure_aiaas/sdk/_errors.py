"""Error replies → the service's exception classes: the SDK's one error mapping.

A reply's ``code`` names the class when it is one of `secure_aiaas.errors`' codes
(``invalid_ciphertext`` → `CiphertextError`, ``audit_unavailable`` → `AuditError`, …); any
other code (``tenant_limit``, ``http_error``, a proxy's HTML page) falls back on the status.
Both bodies the service sends are read: ours, ``{"error", "code", "request_id"}``
(`schemas.ErrorBody`), and OpenAI's, ``{"error": {"message", "type", "code"}}`` (the chat
routes). The raised error keeps the reply's code, and carries ``status_code`` and
``request_id`` (quote it to the operator) as attributes.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from secure_aiaas import errors
from secure_aiaas.errors import (
    AuthenticationError,
    AuthorizationError,
    InputError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceError,
)
from secure_aiaas.schemas import ErrorBody, OpenAIErrorBody

_BY_STATUS: dict[int, type[ServiceError]] = {
    400: InputError,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: InputError,
    429: RateLimitedError,
    503: OverloadedError,
}
_BY_CODE: dict[str, type[ServiceError]] = {
    cls.code: cls
    for cls in vars(errors).values()
    if isinstance(cls, type)
    and issubclass(cls, ServiceError)
    and cls is not errors.ConfigurationError  # a startup refusal, never a reply
}
INVALID_RESPONSE = "invalid_response"


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _read_body(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(message, code, request_id) from either error shape; Nones when it is neither."""
    try:
        ours = ErrorBody.model_validate_json(body)
        return ours.error, ours.code, ours.request_id
    except ValidationError:
        pass
    try:
        openai = OpenAIErrorBody.model_validate_json(body)
        return openai.error.message, openai.error.code, openai.request_id
    except ValidationError:
        return None, None, None


def build_error(
    status: int | None,
    message: str | None,
    code: str | None,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ServiceError:
    """The exception for one error: its class by code, else by status."""
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status or 0, ServiceError)
    exc = cls(message or None)
    if code:
        exc.code = code
    if retry_after is not None and isinstance(exc, RateLimitedError | OverloadedError):
        exc.retry_after = retry_after
    # Attributes, not constructor arguments: errors.py is shared with the server. The note
    # puts the request id in every traceback, for the operator who reads the audit trail.
    setattr(exc, "status_code", status)  # noqa: B010
    setattr(exc, "request_id", request_id)  # noqa: B010
    if request_id is not None:
        exc.add_note(f"request id: {request_id}")
    return exc


def error_from_reply(status: int, headers: Mapping[str, str], body: bytes) -> ServiceError:
    """The exception for an HTTP error reply (status >= 400)."""
    message, code, request_id = _read_body(body)
    return build_error(
        status,
        message,
        code,
        request_id=request_id or headers.get("x-request-id"),
        retry_after=retry_after_s(headers),
    )


def error_from_payload(payload: Mapping[str, Any]) -> ServiceError:
    """The exception for an ``error`` event inside a stream (OpenAI's shape, no status)."""
    try:
        body = OpenAIErrorBody.model_validate(payload)
    except ValidationError:
        return invalid_response("the stream carried a malformed error event")
    return build_error(None, body.error.message, body.error.code, request_id=body.request_id)


def invalid_response(what: str = "unexpected response from the service") -> ServiceError:
    return ServiceError(what, code=INVALID_RESPONSE)


_UNION_TAG = re.compile(r"[\[\]-]|^(str|int|float|bool|none|list|dict|json)$")


def invalid_request(exc: ValidationError) -> InputError:
    """A request the SDK refused before sending it: fields named, values never echoed."""
    problems: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ""
        for part in err["loc"]:
            if isinstance(part, int):
                where += f"[{part}]"
            elif not _UNION_TAG.search(str(part)):
                where += f".{part}" if where else str(part)
        problem = f"{where or 'body'}: {err['msg']}"
        if problem not in problems:
            problems.append(problem)
    return InputError("; ".join(problems[:3]) or "invalid request")
