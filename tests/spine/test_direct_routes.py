"""Routes whose only input is the caller are answered by their direct handler
(`secure_aiaas.api.direct`): the same gate, the same answer and the same audit record as
FastAPI's own handler, which every other route keeps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, Response
from fastapi.exceptions import ResponseValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request

from secure_aiaas.api.app import create_app
from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.direct import direct_handler
from secure_aiaas.config import Settings
from tests.conftest import STANDARD_KEYS, STANDARD_TENANTS, api_routes
from tests.support.audit import stored_records
from tests.support.inprocess import InProcess, in_process, make_settings

# Answers with live figures (load, memory): compared by their shape.
LIVE = {"/v1/admin/resources"}
# Fields of a record that differ between any two requests (and its chain's hashes).
PER_REQUEST = {"seq", "ts", "request_id", "latency_ms"}


def _routes() -> list[APIRoute]:
    return [r for r in api_routes(create_app(Settings())) if isinstance(r, APIRoute)]


def _direct_paths() -> set[str]:
    return {
        r.path
        for r in _routes()
        if direct_handler(r, r.get_route_handler()) is not None  # type: ignore[arg-type]
    }


def test_only_routes_without_inputs_of_their_own_are_direct() -> None:
    direct = _direct_paths()
    assert "/v1/whoami" in direct and "/v1/models" in direct
    for route in _routes():
        if route.path not in direct:
            continue
        # The gate is still the route's one dependency: a direct route is never unauthorized.
        (gate,) = route.dependant.dependencies
        assert hasattr(gate.call, "__authorization__"), route.path
        assert "{" not in route.path, route.path  # no path parameters
        assert not route.dependant.query_params, route.path
    # Routes with parameters, bodies or their own request keep FastAPI's handler.
    for kept in ("/v2/models/{name}/infer", "/v1/embeddings", "/v1/openapi.json", "/metrics"):
        assert kept not in direct


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    tmp = tmp_path_factory.mktemp("direct")
    settings = make_settings(
        tmp, he={"enabled": False}, privacy={"enabled": False}, models_dir=tmp / "no-models"
    )
    with in_process(settings, STANDARD_TENANTS, STANDARD_KEYS) as running:
        yield running


def _record(app: InProcess, request_id: str) -> dict[str, Any]:
    (record,) = stored_records(app.settings.resolved_audit_url(), request_id)
    return {k: v for k, v in record.items() if k not in PER_REQUEST and "hash" not in k}


def _unused() -> None:
    """A dependency override FastAPI's handler resolves (the direct one then steps aside)."""


def _both(app: InProcess, method: str, path: str, who: str | None) -> tuple[Any, Any]:
    headers = app.headers(who) if who else {}
    direct = app.client.request(method, path, headers=headers)
    app.client.app.dependency_overrides[_unused] = _unused  # type: ignore[attr-defined]
    try:
        fastapi = app.client.request(method, path, headers=headers)
    finally:
        app.client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    return direct, fastapi


def _shape(value: Any) -> Any:
    """A JSON value with its scalars replaced by their types (live figures differ)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def _body(response: Any) -> bytes:
    """The body, with the request's own id (error bodies carry it) made comparable."""
    content: bytes = response.content
    return content.replace(response.headers["x-request-id"].encode(), b"<request id>")


@pytest.mark.parametrize("path", sorted(_direct_paths()))
def test_the_direct_answer_and_record_are_fastapis(app: InProcess, path: str) -> None:
    for who in [*STANDARD_KEYS, None]:
        for method in ("GET", "HEAD"):
            direct, fastapi = _both(app, method, path, who)
            if path in LIVE and direct.status_code == 200 and method == "GET":
                assert _shape(direct.json()) == _shape(fastapi.json())
            else:
                assert (direct.status_code, _body(direct)) == (
                    fastapi.status_code,
                    _body(fastapi),
                )
            assert direct.headers["content-type"] == fastapi.headers["content-type"]
            assert direct.headers.get("retry-after") == fastapi.headers.get("retry-after")
            if direct.status_code != 401:  # unauthenticated: aggregated, not one per request
                assert _record(app, direct.headers["x-request-id"]) == _record(
                    app, fastapi.headers["x-request-id"]
                ), (path, who, method)


class _Answer(BaseModel):
    tenant: str


async def _caller(request: Request) -> str:
    return "acme"


_caller.__authorization__ = ("identity", "read")  # type: ignore[attr-defined]
Caller = Annotated[str, Depends(_caller)]
_REQUEST = {"type": "http", "method": "GET", "path": "/x", "headers": [], "app": None}


def _route(endpoint: Any, **options: Any) -> APIRoute:
    router = APIRouter(route_class=BoundedRoute)
    router.add_api_route("/x", endpoint, methods=["GET"], **options)
    route = router.routes[0]
    assert isinstance(route, APIRoute)
    return route


def _direct(endpoint: Any, **options: Any) -> Any:
    route = _route(endpoint, **options)
    return direct_handler(route, route.get_route_handler())


def test_an_answer_that_fails_its_response_model_is_refused_as_fastapi_refuses_it() -> None:
    async def endpoint(auth: Caller) -> dict[str, Any]:
        return {"tenant": ["not", "a", "string"]}

    handler = _direct(endpoint, response_model=_Answer)
    assert handler is not None
    with pytest.raises(ResponseValidationError):
        asyncio.run(handler(Request(_REQUEST)))


def test_an_endpoint_returning_a_response_is_passed_through() -> None:
    async def endpoint(auth: Caller) -> Any:
        return Response(b"raw", media_type="text/plain")

    handler = _direct(endpoint, response_model=_Answer)
    assert handler is not None
    assert asyncio.run(handler(Request(_REQUEST))).body == b"raw"


def test_a_route_with_any_input_of_its_own_keeps_fastapis_handler() -> None:
    async def with_query(auth: Caller, q: str = "") -> dict[str, Any]:
        return {"tenant": q}

    async def with_request(request: Request, auth: Caller) -> dict[str, Any]:
        return {"tenant": "acme"}

    def not_async(auth: Caller) -> dict[str, Any]:
        return {"tenant": "acme"}

    async def plain(auth: Caller) -> dict[str, Any]:
        return {"tenant": "acme"}

    async def unannotated(auth: Caller):  # type: ignore[no-untyped-def]
        return {"tenant": "acme"}

    for endpoint in (with_query, with_request, not_async):
        assert _direct(endpoint, response_model=_Answer) is None, endpoint.__name__
    assert _direct(plain, response_model=_Answer) is not None
    assert _direct(plain, response_model=_Answer, response_model_exclude_none=True) is None
    assert _direct(unannotated) is None  # no response model: FastAPI's encoder decides
