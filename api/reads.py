"""Read endpoints: the catalog, raw events from ClickHouse, live metrics from Redis."""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.params import decode_cursor, encode_cursor, int_param, time_param
from api.services import Services
from riverbed.core.redis import as_text
from riverbed.core.topology import events_table, latest_key, series_key
from sinks.ddl import quote, string_literal

MAX_PAGE = 1000


def list_streams(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    return JSONResponse({"streams": [s.to_public() for s in services.catalog.specs().values()]})


def get_stream(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    return JSONResponse(services.stream(request.path_params["stream"]).to_public())


async def list_events(request: Request) -> JSONResponse:
    """Newest first, keyset-paginated on (event_time, event_id); exact thanks to FINAL."""
    services: Services = request.app.state.services
    spec = services.stream(request.path_params["stream"])
    limit = int_param(request, "limit", 100, 1, MAX_PAGE)
    start, end = time_param(request, "from"), time_param(request, "to")
    where = []
    if start is not None:
        where.append(f"event_time >= fromUnixTimestamp64Milli({start}, 'UTC')")
    if end is not None:
        where.append(f"event_time < fromUnixTimestamp64Milli({end}, 'UTC')")
    cursor = request.query_params.get("cursor")
    if cursor:
        t, event_id = decode_cursor(cursor)
        where.append(
            f"(toUnixTimestamp64Milli(event_time), event_id) < ({t}, {string_literal(event_id)})"
        )
    table = f"{quote(services.settings.clickhouse_database)}.{quote(events_table(spec.name))}"
    sql = (
        f"SELECT *, toUnixTimestamp64Milli(event_time) AS _t FROM {table} FINAL"
        f"{' WHERE ' + ' AND '.join(where) if where else ''}"
        f" ORDER BY event_time DESC, event_id DESC LIMIT {limit}"
    )
    result = await anyio.to_thread.run_sync(
        lambda: services.clickhouse.query(sql, {"output_format_json_quote_64bit_integers": 0})
    )
    rows = result.records()
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
    latest_raw = await services.redis.hgetall(latest_key(spec.name))
    latest: dict[str, Any] = {}
    for member, value in latest_raw.items():
        name = as_text(member)
        latest[name] = json.loads(value)
    recent: dict[str, list[Any]] = {}
    wanted = request.query_params.getlist("series") or [m for m in latest if m.endswith("|*")]
    for member in wanted:
        field, _, group = member.partition("|")
        values = await services.redis.zrange(series_key(spec.name, field, group or "*"), 0, -1)
        recent[member] = [json.loads(v) for v in values]  # type: ignore[arg-type]
    return JSONResponse({"stream": spec.name, "latest": latest, "recent": recent})
