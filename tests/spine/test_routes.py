"""The app's routes are added flat (`api.routes.add_routes`): one match per request, and the
same routes, order, OpenAPI document and overrides as FastAPI's ``include_router``."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from secure_aiaas.api.app import API_ROUTERS as ROUTERS
from secure_aiaas.api.app import create_app
from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.docs import ERROR_RESPONSES
from secure_aiaas.api.routes import add_routes
from secure_aiaas.config import Settings


def _app() -> FastAPI:
    return FastAPI(title="t", version="1", responses=ERROR_RESPONSES)


def test_flat_routes_give_the_same_openapi_document_as_included_ones() -> None:
    included, flat = _app(), _app()
    for router in ROUTERS:
        included.include_router(router)
    add_routes(flat, *ROUTERS)
    assert flat.openapi() == included.openapi()
    assert len(flat.openapi()["paths"]) > 20  # the service's, not an empty pair


def test_the_service_matches_every_route_directly_in_order() -> None:
    app = create_app(Settings())
    routes = [r for r in app.router.routes if isinstance(r, APIRoute)]
    served = [(r.path, sorted(r.methods)) for r in routes]
    declared = [(r.path, sorted(r.methods)) for router in ROUTERS for r in router.routes]
    assert [s for s in served if s in declared] == declared  # all, flat, in order
    assert all(
        isinstance(r, BoundedRoute) for r in routes if (r.path, sorted(r.methods)) in declared
    )


def _marker() -> str:
    return "declared"


def test_a_dependency_override_reaches_a_flat_route() -> None:
    router = APIRouter(route_class=BoundedRoute)

    @router.get("/probe")
    async def probe(value: str = Depends(_marker)) -> dict[str, Any]:
        return {"value": value}

    app = FastAPI()
    add_routes(app, router)
    client = TestClient(app)
    assert client.get("/probe").json() == {"value": "declared"}
    app.dependency_overrides[_marker] = lambda: "overridden"
    assert client.get("/probe").json() == {"value": "overridden"}


@pytest.mark.parametrize("setting", ["prefix", "dependencies"])
def test_a_router_that_needs_including_is_refused(setting: str) -> None:
    router = (
        APIRouter(prefix="/p")
        if setting == "prefix"
        else APIRouter(dependencies=[Depends(_marker)])
    )
    with pytest.raises(TypeError, match="include it"):
        add_routes(FastAPI(), router)
