"""Exception tree shared by every subpackage (a leaf: imports nothing from the package).

::

    ServiceError(code, public_message)
      AuthenticationError        401 (+ WWW-Authenticate)
      AuthorizationError         403
      InputError                 422 (400 for malformed requests)
        CiphertextError          422  (bad bytes, parameter mismatch)
        ContextLengthError       422  (prompt + max_tokens beyond a chat model's context)
        PayloadTooLargeError     413
      NotFoundError              404
      RateLimitedError           429 (+ Retry-After)
      OverloadedError            503 (+ Retry-After)
      PrivacyError               503  (scrubber unavailable: refuse, never pass through)
      PolicyUnavailableError     503  (no loaded policy: refuse)
      AuditError                 503  (no audit, no answer)
      StoreUnavailableError      503  (tenant/key registry unreachable: refuse)
      InferenceError             500
      CryptoError                500  (never carries key material)
      ConfigurationError         startup refused (bad keys, bad policy, bad settings)

Public messages never contain user input, key material or internal exception text: the HTTP
layer (`api/errors.py`) is the only place that maps these to status codes.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports to a caller."""

    code: str = "internal_error"
    public_message: str = "internal error"
    # The request's audit facts when the error was raised (set by the layer that knew them;
    # the HTTP layer hands them to the audit record). An `AuditFacts`; typed loosely here
    # because this module imports nothing from the package.
    facts: object | None = None

    def __init__(self, public_message: str | None = None, *, code: str | None = None) -> None:
        if public_message is not None:
            self.public_message = public_message
        if code is not None:
            self.code = code
        super().__init__(self.public_message)

    def with_facts(self, facts: object) -> ServiceError:
        """This error, carrying the audit facts known when it was raised."""
        self.facts = facts
        return self


class AuthenticationError(ServiceError):
    code = "unauthenticated"
    # One message for unknown, revoked and malformed keys: the caller learns nothing more.
    public_message = "missing or invalid API key"


class AuthorizationError(ServiceError):
    code = "forbidden"
    public_message = "not allowed by policy"


class InputError(ServiceError):
    code = "invalid_input"
    public_message = "invalid input"


class MalformedRequestError(InputError):
    code = "malformed_request"
    public_message = "malformed request"


class CredentialsInQueryError(MalformedRequestError):
    code = "credentials_in_query"
    public_message = "credentials in the query string are refused; use the Authorization header"


class CiphertextError(InputError):
    code = "invalid_ciphertext"
    public_message = "invalid ciphertext"


class ContextLengthError(InputError):
    code = "context_length_exceeded"  # OpenAI's code for the same refusal
    public_message = "prompt and max_tokens exceed the model's context length"


class PayloadTooLargeError(InputError):
    code = "payload_too_large"
    public_message = "request body too large"


class NotFoundError(ServiceError):
    code = "not_found"
    public_message = "not found"


class RateLimitedError(ServiceError):
    code = "rate_limited"
    public_message = "rate limit exceeded"

    def __init__(self, public_message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(public_message)
        self.retry_after = retry_after


class OverloadedError(ServiceError):
    code = "overloaded"
    public_message = "service overloaded, retry later"

    def __init__(self, public_message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(public_message)
        self.retry_after = retry_after


class PrivacyError(ServiceError):
    code = "privacy_unavailable"
    public_message = "personal-data scrubber unavailable; request refused"


class PolicyUnavailableError(ServiceError):
    code = "policy_unavailable"
    public_message = "authorization policy unavailable; request refused"


class AuditError(ServiceError):
    code = "audit_unavailable"
    public_message = "audit store unavailable; request refused"


class StoreUnavailableError(ServiceError):
    code = "store_unavailable"
    public_message = "identity store unavailable; request refused"


class InferenceError(ServiceError):
    code = "inference_failed"
    public_message = "inference failed"


class CryptoError(ServiceError):
    code = "crypto_error"
    public_message = "cryptographic operation failed"


class ConfigurationError(ServiceError):
    code = "configuration_error"
    public_message = "invalid configuration"
