"""``/openapi.json`` and ``/docs``: the API describes itself, and shows it in a browser.

The document is built per request from the route table the app serves (``app.state.endpoints``)
and the live stream catalog, so a stream created a second ago is documented. Swagger UI is
served from files in the package (``api/static/swagger-ui``, see its VERSION), never a CDN: the
docs work offline and load no third-party code.
"""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.staticfiles import StaticFiles

from api.openapi import build_openapi
from api.services import Services

SWAGGER_UI = Path(__file__).resolve().parent / "static" / "swagger-ui"


async def openapi_json(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    catalog = await anyio.to_thread.run_sync(services.catalog.specs)
    return JSONResponse(build_openapi(catalog, request.app.state.endpoints))


def swagger_ui() -> StaticFiles:
    """Swagger UI's page and assets; ``/docs/`` answers index.html."""
    return StaticFiles(directory=SWAGGER_UI, html=True)
