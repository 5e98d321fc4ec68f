"""The API's own documentation, served by the service itself (no CDN, works offline).

``GET /openapi.json`` (the OpenAPI document), ``GET /docs`` (Swagger UI) and ``GET /redoc``
need no API key: they describe the API, the same for everyone, and hold no tenant data.
Their assets come from the `fastapi-offline` package (Swagger UI and ReDoc bundles), mounted
at ``/docs-assets``. Trying a route from ``/docs`` needs a key like any call
(the *Authorize* button takes ``Bearer saiaas_…``).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from secure_aiaas.schemas import ErrorBody, V2InferRequest

ASSETS = "/docs-assets"
# Models referenced from hand-written request bodies (routes that read bytes themselves).
_EXTRA_SCHEMAS: tuple[type[BaseModel], ...] = (V2InferRequest,)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Malformed request (e.g. a credential in the query string)"),
        (401, "Missing or invalid API key"),
        (403, "Not allowed by policy"),
        (404, "Not found (or not the caller's)"),
        (413, "Body too large"),
        (422, "Invalid input (names the field, never echoes the value)"),
        (429, "Over a quota or limit (Retry-After)"),
        (503, "A dependency the request needs is unavailable (fail closed; Retry-After)"),
    )
}


def install_docs(app: FastAPI) -> None:
    static = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} — API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in _EXTRA_SCHEMAS:
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in definition.pop("$defs", {}).items():
                    components.setdefault(name, sub)
                components[model.__name__] = definition
            schema["components"]["securitySchemes"] = {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer saiaas_…`",
                }
            }
            schema["security"] = [{"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
