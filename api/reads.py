"""Read endpoints: the catalog, raw events from ClickHouse, live metrics from Redis."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth import visible_streams
from api.params import decode_cursor, encode_cursor, int_param, time_param
from api.services import Services

MAX_PAGE = 1000
MAX_SERIES = 100  # ?series= values answered per request


def list_streams(request: Request) -> JSONResponse:
    """Every stream, or those of a stream-limited key."""
    services: Services = request.app.state.services
    visible = visible_streams(request)
    specs = services.catalog.specs().values()
    return JSONResponse(
        {"streams": [s.to_public() for s in specs if visible is None or s.name in visible]}
    )


def get_stream(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    return JSONResponse(services.stream(request.path_params["stream"]).to_public())


async def list_events(request: Request) -> JSONResponse:
    """Newest first, keyset-paginated on (event_time, event_id); exact thanks to FINAL."""
    services: Services = request.app.state.services
    spec = services.stream(request.path_params["stream"])
    limit = int_param(request, "limit", 100, 1, MAX_PAGE)
    start, end = time_param(request, "from"), time_param(request, "to")
    cursor = request.query_params.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    rows = await anyio.to_thread.run_sync(
        lambda: services.events.page(spec.name, limit=limit, start=start, end=end, after=after)
    )
    next_cursor = None
    if len(rows) == limit:
        next_cursor = encode_cursor(int(rows[-1]["_t"]), rows[-1]["event_id"])
    for row in rows:
        row.pop("_t", None)
    return JSONResponse({"stream": spec.name, "events": rows, "next_cursor": next_cursor})


async def get_metrics(request: Request) -> JSONResponse:
    """Latest value per (field, group); recent windows of ``?series=field|group`` (or totals)."""
    services: Services = request.app.state.services
    spec = services.stream(request.path_params["stream"])
    latest = await services.live.stream_latest(spec.name)
    recent: dict[str, list[Any]] = {}
    wanted = request.query_params.getlist("series") or [m for m in latest if m.endswith("|*")]
    for member in wanted[:MAX_SERIES]:
        field, _, group = member.partition("|")
        recent[member] = await services.live.stream_series(spec.name, field, group or "*")
    return JSONResponse({"stream": spec.name, "latest": latest, "recent": recent})
