"""ServiceError → HTTP: the only place where status codes live.

Every error body has the same shape, ``{"error": <message>, "code": <code>, "request_id"}``
(``error`` as the KServe v2 protocol expects). Messages are the errors' public messages:
never user input, key material or an internal exception's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from secure_aiaas import errors as e

STATUS: dict[type[e.ServiceError], int] = {
    e.AuthenticationError: 401,
    e.AuthorizationError: 403,
    e.NotFoundError: 404,
    e.PayloadTooLargeError: 413,
    e.MalformedRequestError: 400,
    e.InputError: 422,
    e.RateLimitedError: 429,
    e.OverloadedError: 503,
    e.PrivacyError: 503,
    e.PolicyUnavailableError: 503,
    e.AuditError: 503,
    e.StoreUnavailableError: 503,
    e.InferenceError: 500,
    e.CryptoError: 500,
}


def status_for(exc: e.ServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


_UNION_TAG = re.compile(r"[\[\]-]|^(str|int|float|bool|none|list|dict|json)$")


def _where(loc: Sequence[object]) -> str:
    """``("body", "input", "list[constrained-str]", 0)`` → ``input[0]`` (union tags dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "body" and not _UNION_TAG.search(str(part)):
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_message(errors: Sequence[Any]) -> str:
    """Pydantic's errors as ``field: problem``, at most three, naming fields and never
    echoing values; of a union's alternatives the most specific (deepest) is kept."""
    best: dict[str, tuple[int, str]] = {}
    order: list[str] = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        depth = sum(1 for p in loc if isinstance(p, int) or not _UNION_TAG.search(str(p)))
        field = _where(loc)
        root = field.split("[", 1)[0].split(".", 1)[0]
        if root not in best:
            order.append(root)
        if root not in best or depth > best[root][0]:
            best[root] = (depth, f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(best[r][1] for r in order[:3]) or "invalid request"


# Routes that answer errors in OpenAI's shape (`{"error": {"message", "type", "code"}}`), as
# the openai client expects; every other route uses `ErrorBody`.
OPENAI_ERROR_PATHS = ("/v1/chat/", "/v1/completions")
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(
    message: str, code: str, request_id: str | None, path: str = "", status: int = 500
) -> dict[str, object]:
    """The one error shape of ``path`` (OpenAI's on the chat routes)."""
    if path.startswith(OPENAI_ERROR_PATHS):
        kind = _OPENAI_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        return {
            "error": {"message": message, "type": kind, "param": None, "code": code},
            "request_id": request_id,
        }
    return {"error": message, "code": code, "request_id": request_id}


def error_response(exc: e.ServiceError, request_id: str | None, path: str = "") -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, e.AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    status = status_for(exc)
    return JSONResponse(
        error_body(exc.public_message, exc.code, request_id, path, status),
        status_code=status,
        headers=headers,
    )


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(e.ServiceError)
    async def _service_error(request: Request, exc: e.ServiceError) -> JSONResponse:
        return error_response(exc, _request_id(request), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body(
                validation_message(exc.errors()),
                "invalid_input",
                _request_id(request),
                request.url.path,
                422,
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: "not found", 405: "method not allowed"}.get(
            exc.status_code, "request refused"
        )
        return JSONResponse(
            error_body(
                message, "http_error", _request_id(request), request.url.path, exc.status_code
            ),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
