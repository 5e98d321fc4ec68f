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


def error_body(message: str, code: str, request_id: str | None) -> dict[str, object]:
    return {"error": message, "code": code, "request_id": request_id}


def error_response(exc: e.ServiceError, request_id: str | None) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, e.AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    return JSONResponse(error_body(exc.public_message, exc.code, request_id),
                        status_code=status_for(exc), headers=headers)


def _request_id(request: Request) -> str | None:
    ctx = request.scope.get("state", {}).get("audit")
    return getattr(ctx, "request_id", None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(e.ServiceError)
    async def _service_error(request: Request, exc: e.ServiceError) -> JSONResponse:
        return error_response(exc, _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(validation_message(exc.errors()), "invalid_input",
                                       _request_id(request)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: "not found", 405: "method not allowed"}.get(exc.status_code,
                                                                     "request refused")
        return JSONResponse(error_body(message, "http_error", _request_id(request)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))
