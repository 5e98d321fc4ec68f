"""Routes whose only input is the caller, answered without FastAPI's dependency solver.

A route such as ``GET /v1/whoami`` takes nothing but the `Authorized` value of its
``authorize(obj, act)`` gate: no path, query, header, cookie or body parameter of its own.
For such a route FastAPI's per-request work (solving the dependency graph, reading query
parameters and cookies it never uses, its caches and telemetry hooks) took about a fifth of
the event loop's time per request (`benchmarks/inprocess_path.py`: 240-260 us per request
with it, 180-200 without), more than the policy decision and quota admission together. Its
direct handler calls the same gate and the same endpoint, and serialises the answer with
the route's own response field, exactly as FastAPI does (the same validation, the same
bytes); routing (`api.routes.add_routes`), error handlers and the audit middleware are as
for every route.

Anything else (a parameter, a response class, a status without a body, a dependency
override) keeps FastAPI's handler: the direct one is taken only where it is provably the
same answer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.exceptions import ResponseValidationError
from fastapi.routing import APIRoute
from starlette.routing import get_name

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# A status whose response has no body (RFC 9110); such routes keep FastAPI's handler.
_BODYLESS = frozenset({204, 304})


def _caller_only_gate(route: APIRoute) -> Callable[[Request], Coroutine[Any, Any, Any]] | None:
    """The route's authorization gate, if it is the route's one and only input."""
    dependant = route.dependant
    if (
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.request_param_name
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or len(dependant.dependencies) != 1
    ):
        return None
    gate = dependant.dependencies[0]
    if (
        gate.call is None
        or not hasattr(gate.call, "__authorization__")
        or gate.dependencies
        or gate.path_params
        or gate.query_params
        or gate.header_params
        or gate.cookie_params
        or gate.body_params
        or gate.request_param_name is None
        or gate.scope is not None
    ):
        return None
    call: Callable[[Request], Coroutine[Any, Any, Any]] = gate.call
    return call


def direct_handler(route: APIRoute, fallback: Handler) -> Handler | None:
    """A handler for ``route`` that skips FastAPI's solver, or None where it may differ."""
    gate = _caller_only_gate(route)
    field = route.response_field
    endpoint = route.dependant.call
    if (
        gate is None
        or field is None
        or endpoint is None
        or not inspect.iscoroutinefunction(endpoint)
        or not isinstance(route.response_class, DefaultPlaceholder)
        or route.response_model_include is not None
        or route.response_model_exclude is not None
        or not route.response_model_by_alias
        or route.response_model_exclude_unset
        or route.response_model_exclude_defaults
        or route.response_model_exclude_none
        or (route.status_code or 200) in _BODYLESS
    ):
        return None
    param = route.dependant.dependencies[0].name  # the endpoint's parameter for the gate
    if param is None:
        return None
    status = route.status_code or 200
    name = get_name(endpoint)

    async def direct(request: Request) -> Response:
        if getattr(request.app, "dependency_overrides", None):
            return await fallback(request)  # an override is FastAPI's to resolve
        answer = await endpoint(**{param: await gate(request)})
        if isinstance(answer, Response):
            return answer
        value, errors = field.validate(answer, {}, loc=("response",))
        if errors:
            raise ResponseValidationError(errors=errors, body=answer)
        return Response(
            content=field.serialize_json(value, by_alias=True),
            status_code=status,
            media_type="application/json",
        )

    direct.__name__ = f"direct_{name}"
    return direct
