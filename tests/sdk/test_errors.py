"""The SDK's one error mapping: reply → exception class, code, request id, Retry-After."""

from __future__ import annotations

import email.utils
import json
import time

import pytest
from pydantic import ValidationError

from secure_aiaas import errors as e
from secure_aiaas.llm import wire
from secure_aiaas.schemas import EmbeddingsRequest
from secure_aiaas.sdk._errors import (
    error_from_payload,
    error_from_reply,
    invalid_request,
    retry_after_s,
)


def ours(message: str, code: str, request_id: str | None = "req-1") -> bytes:
    return json.dumps({"error": message, "code": code, "request_id": request_id}).encode()


@pytest.mark.parametrize(("status", "code", "cls"), [
    (401, "unauthenticated", e.AuthenticationError),
    (403, "forbidden", e.AuthorizationError),
    (404, "not_found", e.NotFoundError),
    (404, "http_error", e.NotFoundError),  # no route: by status
    (413, "payload_too_large", e.PayloadTooLargeError),
    (422, "invalid_input", e.InputError),
    (422, "invalid_ciphertext", e.CiphertextError),
    (422, "context_length_exceeded", e.ContextLengthError),
    (422, "unsupported_model_feature", e.InputError),  # a code not in errors.py: by status
    (400, "invalid_input", e.InputError),
    (429, "rate_limited", e.RateLimitedError),
    (429, "tenant_limit", e.RateLimitedError),
    (503, "overloaded", e.OverloadedError),
    (503, "privacy_unavailable", e.PrivacyError),
    (503, "audit_unavailable", e.AuditError),
    (503, "policy_unavailable", e.PolicyUnavailableError),
    (500, "inference_failed", e.InferenceError),
    (500, "crypto_error", e.CryptoError),
    (500, "internal_error", e.ServiceError),
    (502, "", e.ServiceError),
])  # fmt: skip
def test_class_by_code_then_status(status: int, code: str, cls: type[e.ServiceError]) -> None:
    exc = error_from_reply(status, {}, ours("the public message", code))
    assert type(exc) is cls
    assert exc.public_message == "the public message"
    assert exc.code == (code or cls.code)
    assert vars(exc)["status_code"] == status and vars(exc)["request_id"] == "req-1"
    assert exc.__notes__ == ["request id: req-1"]  # shown in tracebacks


def test_openai_shaped_body() -> None:
    body = wire.service_error_body(e.ContextLengthError(), status=422, request_id="req-9")
    exc = error_from_reply(422, {}, json.dumps(body).encode())
    assert type(exc) is e.ContextLengthError
    assert exc.public_message == e.ContextLengthError.public_message
    assert vars(exc)["request_id"] == "req-9"


def test_not_json_falls_back_on_status_and_default_message() -> None:
    exc = error_from_reply(503, {"x-request-id": "req-h"}, b"<html>Bad gateway</html>")
    assert type(exc) is e.OverloadedError
    assert exc.public_message == e.OverloadedError.public_message
    assert vars(exc)["request_id"] == "req-h"
    assert "html" not in str(exc)


def test_retry_after_is_carried() -> None:
    exc = error_from_reply(429, {"retry-after": "7"}, ours("slow down", "rate_limited"))
    assert isinstance(exc, e.RateLimitedError) and exc.retry_after == 7.0


@pytest.mark.parametrize(("value", "expected"), [
    ("3", 3.0), ("0", 0.0), (" 2 ", 2.0), ("1.5", 1.5), ("-1", None), ("nan", None),
    ("inf", None), ("soon", None), ("", None),
])  # fmt: skip
def test_retry_after_values(value: str, expected: float | None) -> None:
    assert retry_after_s({"retry-after": value}) == expected


def test_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_s({"retry-after": when})
    assert seconds is not None and 25 <= seconds <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after_s({"retry-after": past}) == 0.0
    assert retry_after_s({}) is None


def test_stream_error_event() -> None:
    payload = json.loads(wire.sse_error(e.OverloadedError(), status=503)[len("data: ") :])
    exc = error_from_payload(payload)
    assert type(exc) is e.OverloadedError and exc.code == "overloaded"
    assert error_from_payload({"error": "not an object"}).code == "invalid_response"


def test_local_validation_names_fields_never_values() -> None:
    secret = "4111 1111 1111 1111 belongs to Jane Doe"
    with pytest.raises(ValidationError) as caught:
        EmbeddingsRequest.model_validate({"model": "BAD MODEL", "input": [secret, ""],
                                          "extra": secret})  # fmt: skip
    exc = invalid_request(caught.value)
    assert isinstance(exc, e.InputError)
    assert "model" in exc.public_message and "input[1]" in exc.public_message
    assert "Jane" not in exc.public_message and "4111" not in exc.public_message
    assert "BAD MODEL" not in exc.public_message
