"""api/routes: one module per area, each an `APIRouter`; `add_routes` puts them on the app."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Each router's routes added to the app's own router, in order, as ``include_router``
    added them before FastAPI 0.12x.

    FastAPI 0.165 includes a router as a wrapper that the app's router matches into, then
    matches again to pick the route: for ``GET /v1/whoami`` ~20 % of the event loop's
    profile samples were in that matching (docs/benchmarks.md). Added flat, a request is
    matched once, against the same routes in the same order; OpenAPI, dependency overrides
    and responses come out the same (tests/spine/test_routes.py).
    """
    for router in routers:
        if router.on_startup or router.on_shutdown or router.prefix or router.dependencies:
            raise TypeError("a router with its own events, prefix or dependencies: include it")
        for route in router.routes:
            if not isinstance(route, APIRoute):
                raise TypeError(f"not an APIRoute: {route!r}: include its router")
            app.router.add_api_route(
                route.path,
                route.endpoint,
                response_model=route.response_model,
                status_code=route.status_code,
                tags=route.tags,
                dependencies=route.dependencies,
                summary=route.summary,
                description=route.description,
                response_description=route.response_description,
                responses=route.responses,
                deprecated=route.deprecated,
                methods=route.methods,
                operation_id=route.operation_id,
                response_model_include=route.response_model_include,
                response_model_exclude=route.response_model_exclude,
                response_model_by_alias=route.response_model_by_alias,
                response_model_exclude_unset=route.response_model_exclude_unset,
                response_model_exclude_defaults=route.response_model_exclude_defaults,
                response_model_exclude_none=route.response_model_exclude_none,
                include_in_schema=route.include_in_schema,
                response_class=route.response_class,
                name=route.name,
                route_class_override=type(route),
                callbacks=route.callbacks,
                openapi_extra=route.openapi_extra,
                generate_unique_id_function=route.generate_unique_id_function,
                strict_content_type=route.strict_content_type,
                max_body_size=route.max_body_size,
                form_limits=route.form_limits,
            )
