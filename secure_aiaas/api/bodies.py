"""Request bodies read under bounds, before any handler sees them.

Every route of the app uses `BoundedRoute`: a declared JSON body is parsed once, with a parser that
cannot be driven into deep recursion (pydantic-core's, in Rust, which also refuses lone
surrogates), then its nesting depth and number of values are checked; over a bound the
request is refused with 422 before a handler, a scrubber or a model does any work. The parsed
value is handed to FastAPI (Starlette caches ``request.json()``), so nothing parses twice.
Byte caps live in the middleware (they hold for chunked uploads too).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.routing import APIRoute

from secure_aiaas.api.direct import direct_handler
from secure_aiaas.config import LimitsSettings
from secure_aiaas.errors import InputError, ServiceError
from secure_aiaas.types import AuditFacts

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyTooComplexError(InputError):
    code = "body_too_complex"
    public_message = "request body nested too deeply or holding too many values"


def parse_bounded(raw: bytes, limits: LimitsSettings, what: str = "body") -> Any:
    """``raw`` as JSON within the depth and value bounds.

    Raises:
        InputError: not JSON (``{what}: not valid JSON``).
        BodyTooComplexError: deeper than ``json_max_depth`` or more than ``json_max_values``.
    """
    try:
        value = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise BodyTooComplexError(
                f"{what}: nested deeper than {limits.json_max_depth} levels"
            ) from None
        raise InputError(f"{what}: not valid JSON") from None
    check_shape(value, limits, what)
    return value


def check_shape(value: Any, limits: LimitsSettings, what: str = "body") -> None:
    """Depth and value count of a parsed JSON value, iteratively (no recursion to exhaust),
    stopping at the first bound crossed."""
    max_depth, max_values = limits.json_max_depth, limits.json_max_values
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > max_values:
            raise BodyTooComplexError(f"{what}: more than {max_values} values")
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise BodyTooComplexError(f"{what}: nested deeper than {max_depth} levels")
            children = item.values() if isinstance(item, dict) else item
            if seen + len(children) > max_values:
                raise BodyTooComplexError(f"{what}: more than {max_values} values")
            stack.extend((child, depth + 1) for child in children)


def _is_json(request: Request) -> bool:
    if "inference-header-content-length" in request.headers:
        return False  # the KServe binary extension: the route splits and bounds it itself
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "" or media == "application/json" or media.endswith("+json")


class BoundedRoute(APIRoute):
    """The route class of every route: its declared JSON body is parsed under the app's
    `LimitsSettings`, and an error that carries audit facts hands them to the record. A
    route whose only input is the caller is answered by its direct handler (`api.direct`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        handler = direct_handler(self, handler) or handler
        parses_json = self.body_field is not None  # others read their bodies themselves

        async def bounded(request: Request) -> Response:
            if parses_json and request.method in _BODY_METHODS and _is_json(request):
                raw = await request.body()
                if raw:
                    limits: LimitsSettings = request.app.state.limits
                    request._json = parse_bounded(raw, limits)  # Starlette's json() cache
            try:
                return await handler(request)
            except ServiceError as exc:
                if isinstance(exc.facts, AuditFacts):
                    request.scope["state"]["facts"] = exc.facts
                raise

        return bounded
