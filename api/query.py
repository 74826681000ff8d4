"""``POST /v1/query``: read-only SQL for analysts, with a row limit and a timeout.

Two fences: a statement check that gives a clear 400 for anything but a single read statement,
and ClickHouse's own ``readonly=1`` on the query, which is what actually enforces it.
"""

from __future__ import annotations

import re
import time

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.audit import note
from api.models import SqlQuery, read_model
from api.problems import Problem
from api.services import Services
from api.stores.events import EVENT_READS
from riverbed.core.errors import Invalid

READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_FORBIDDEN = re.compile(r"\bFORMAT\s+\w+\s*$|\bINTO\s+OUTFILE\b", re.IGNORECASE)
# Quoted strings and identifiers are matched first so comment markers inside them survive.
_QUOTED_OR_COMMENT = re.compile(
    r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`)|--[^\n]*|/\*.*?\*/", re.DOTALL
)


class UnsafeQuery(Invalid):
    """The SQL is not a single read-only statement."""


def check_sql(sql: str) -> str:
    """Return the statement without trailing semicolons; raise :class:`UnsafeQuery`."""
    statement = _QUOTED_OR_COMMENT.sub(lambda m: m.group(1) or " ", sql).strip()
    statement = statement.rstrip(";").strip()
    if not statement:
        raise UnsafeQuery("the query is empty")
    if ";" in _strip_strings(statement):
        raise UnsafeQuery("send one statement per request")
    first = statement.split(None, 1)[0].upper()
    if first not in READ_STATEMENTS:
        raise UnsafeQuery(f"{first} is not allowed; only {', '.join(READ_STATEMENTS)} statements")
    if _FORBIDDEN.search(statement):
        raise UnsafeQuery("FORMAT and INTO OUTFILE are chosen by the API; remove them")
    return statement


def _strip_strings(sql: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'", "''", sql)


async def post_query(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    sql = (await read_model(request, SqlQuery)).sql
    note(request, sql=sql[:2000])  # the audit trail keeps who asked what
    try:
        statement = check_sql(sql)
    except UnsafeQuery as exc:
        raise Problem(400, "Query not allowed", str(exc), pointer="/sql") from None
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
    result = await anyio.to_thread.run_sync(lambda: services.clickhouse.query(statement, settings))
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
