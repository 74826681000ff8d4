"""``POST /v1/query``: read-only SQL for analysts, with a row limit and a timeout.

Two fences: :mod:`api.sql_fence` (ClickHouse's own parser: one read statement, no settings, no
table functions, no system tables but the schema ones), which answers a clear 400, and
``readonly=1`` with the limits as settings of the query itself.

``format`` json answers columns and rows, at most ``query_row_limit`` of them; csv, ndjson and
parquet stream every row as a download, through :class:`api.engine_relay.EngineRelay` (query
slots, cancellation when the caller leaves) with the analysts' endpoint's limits.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.audit import note
from api.auth import roles_of, streams_of
from api.clickhouse_protocol import QueryFailed, status_of
from api.engine_relay import EngineRelay
from api.models import SqlQuery, read_model
from api.problems import Problem
from api.services import Services
from api.sql_fence import QueryRefused, fence
from api.sql_limits import fixed_settings
from api.stores.events import EVENT_READS
from riverbed.core.clickhouse import parameter_text

#: Export formats: ClickHouse's format, the media type, the file name's extension.
EXPORTS = {
    "csv": ("CSVWithNames", "text/csv; charset=utf-8", "csv"),
    "ndjson": ("JSONEachRow", "application/x-ndjson", "ndjson"),
    "parquet": ("Parquet", "application/vnd.apache.parquet", "parquet"),
}


async def post_query(request: Request) -> Response:
    services: Services = request.app.state.services
    body = await read_model(request, SqlQuery)
    sql, params = body.sql, body.params or None
    note(request, sql=sql[:2000])  # the audit trail keeps who asked what
    database = services.settings.clickhouse_database
    audit_allowed = "audit:read" in getattr(request.auth, "scopes", ())
    try:
        statement = await anyio.to_thread.run_sync(
            fence, services.clickhouse, sql, database, audit_allowed, params
        )
    except QueryRefused as exc:
        raise Problem(400, "Query not allowed", exc.detail, pointer="/sql") from None
    if body.format != "json":
        return await export(request, services, statement, body.format, params)
    limit = services.settings.query_row_limit
    settings = {
        "readonly": 1,
        "max_execution_time": services.settings.query_timeout_seconds,
        "max_result_rows": limit,
        "max_memory_usage": services.settings.query_max_memory_bytes,
        "result_overflow_mode": "break",
        **EVENT_READS,
    }
    started = time.perf_counter()
    result = await anyio.to_thread.run_sync(
        lambda: services.clickhouse.query(statement, settings, params)
    )
    rows = result.rows[:limit]
    return JSONResponse(
        {
            "columns": result.columns,
            "rows": rows,
            "row_count": len(rows),
            "truncated": len(result.rows) > limit,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    )


async def export(
    request: Request,
    services: Services,
    statement: str,
    kind: str,
    params: dict[str, Any] | None,
) -> Response:
    """Every row of ``statement`` in ``kind``, streamed from the engine as a download."""
    fmt, media_type, extension = EXPORTS[kind]
    relay: EngineRelay = services.relay
    query_id = f"query-{uuid.uuid4()}"
    settings = fixed_settings(services.settings, streams_of(request.user), roles_of(request.user))
    settings.update({k: str(v) for k, v in EVENT_READS.items()})
    try:
        response = await relay.run(
            request,
            request.user.identity,
            statement,
            fmt,
            settings,
            query_id,
            {name: parameter_text(value) for name, value in (params or {}).items()},
        )
    except QueryFailed as exc:
        raise Problem(
            exc.http_status or status_of(exc.code), "Query failed", str(exc)[:2000]
        ) from None
    response.headers["content-type"] = media_type
    response.headers["content-disposition"] = f'attachment; filename="query.{extension}"'
    return response
