"""``POST /v1/query``: read-only SQL for analysts, with a row limit and a timeout.

Two fences: :mod:`api.sql_fence` (ClickHouse's own parser: one read statement, no settings, no
table functions, no system tables but the schema ones), which answers a clear 400, and
``readonly=1`` with the limits as settings of the query itself.
"""

from __future__ import annotations

import time

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.audit import note
from api.models import SqlQuery, read_model
from api.problems import Problem
from api.services import Services
from api.sql_fence import QueryRefused, fence
from api.stores.events import EVENT_READS


async def post_query(request: Request) -> JSONResponse:
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
