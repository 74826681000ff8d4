"""The analysts' ClickHouse: ClickHouse's HTTP interface with Riverbed API keys as passwords.

Analysts point the tools they already use (clickhouse-connect, pandas, @clickhouse/client,
Grafana's plugin, DBeaver) at this port; it answers as a read-only ClickHouse user would, for
the embedded engine and for a real server alike, and forwards each query to the pipeline's
ClickHouse (``CLICKHOUSE_URL``) only once it is fenced:

- **who**: a key with scope ``query:sql``, sent as the password (Basic auth, ``X-ClickHouse-Key``
  or ``password=``; the user name is free) or as a bearer token;
- **what**: one read statement, checked by ClickHouse's own parser (:mod:`api.sql_fence`); a
  trailing ``FORMAT`` is the client's to choose, ``SETTINGS`` in the text are not; inserts are
  refused (the ingest path is the only writer); a key limited to streams sees no other
  stream's table, and its rows of the shared tables only (``additional_table_filters``);
- **how much**: ``readonly=1`` and the limits (time, memory, result rows and bytes, threads)
  fixed here as settings; a client may change only formatting settings, anything else is
  refused as a read-only server refuses it (code 164);
- **how many**: a query slot per running query, a few per key, so analysts queue among
  themselves instead of crowding the sink off the engine; a query whose client goes away is
  killed on the engine.

It is a process of its own (``riverbed run sql``), so a heavy export never shares an event loop
with ingest or ``/readyz``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api.auth import KeyCache
from api.clickhouse_protocol import (
    DEFAULT_FORMAT,
    TRANSPORT,
    AuthenticationFailed,
    QueryFailed,
    credentials,
    decompress,
    error_response,
    read_body,
    settings_of,
    split_request,
)
from api.engine_relay import EngineRelay, Slots
from api.sql_fence import QueryRefused, Reader, fence_with_format
from control.db import control_sessions
from control.keys import ApiKeys, KeyInfo
from control.scopes import GRANTABLE
from riverbed.core.clickhouse import ServerEngine, string_literal
from riverbed.core.settings import Settings
from riverbed.core.topology import DEAD_LETTERS_TABLE, METRIC_RESULTS_TABLE, METRICS_TABLE

log = logging.getLogger(__name__)
SCOPE = "query:sql"
#: Settings a client may send: how the answer is printed, never what or how much is computed.
CLIENT_SETTING_PREFIXES = ("output_format_", "format_")
CLIENT_SETTINGS = frozenset(
    {
        "date_time_output_format",
        "interval_output_format",
        "extremes",
        "join_use_nulls",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "http_zlib_compression_level",
        "cancel_http_readonly_queries_on_client_close",
        "wait_end_of_query",
        "enable_http_compression",
    }
)
#: Transport parameters this endpoint decides itself: sessions would let state outlive a
#: query, and a client's query id could name someone else's.
IGNORED = frozenset({"session_id", "session_timeout", "session_check", "query_id"})
#: Tables with a ``stream`` column: a key limited to streams reads only its streams' rows.
SHARED_TABLES = (DEAD_LETTERS_TABLE, METRICS_TABLE, METRIC_RESULTS_TABLE)
#: Headers of the engine's answer that a client reads.
RELAYED = ("content-type", "content-encoding", "x-clickhouse-format", "x-clickhouse-timezone")


class AccessDenied(QueryFailed):
    http_status = 403

    def __init__(self, detail: str, code: int = 497) -> None:
        name = "READONLY" if code == 164 else "ACCESS_DENIED"
        super().__init__(f"Code: {code}. DB::Exception: {detail}. ({name})")


#: Limits a client may lower, never raise (Grafana's plugin sends its query timeout as
#: ``max_execution_time``, which a read-only server refuses; a lower one only tightens).
LIMITS = frozenset(
    {"max_execution_time", "max_memory_usage", "max_result_rows", "max_result_bytes", "max_threads"}
)


def fixed_settings(
    settings: Settings, streams: list[str] | None, asked: dict[str, str] | None = None
) -> dict[str, str]:
    """The settings every analyst query runs with, for a caller limited to ``streams`` (None:
    every stream); the client cannot reach them but to lower a limit (``asked``)."""
    fixed = {
        "max_execution_time": str(settings.sql_timeout_seconds),
        "max_memory_usage": str(settings.query_max_memory_bytes),
        "max_result_rows": str(settings.sql_max_result_rows),
        "max_result_bytes": str(settings.sql_max_result_bytes),
        "result_overflow_mode": "throw",
        "max_threads": str(settings.sql_max_threads),
        "readonly": "1",  # last: the engine applies it after the others
    }
    for name, value in (asked or {}).items():
        lower = _number(value)
        if name in LIMITS and lower is not None and 0 < lower < float(fixed[name]):
            fixed[name] = value
    filters = row_filters(settings.clickhouse_database, streams)
    if filters:
        fixed = {"additional_table_filters": filters, **fixed}
    return fixed


def row_filters(database: str, streams: list[str] | None) -> str:
    """``additional_table_filters`` for a key limited to ``streams`` (empty when it is not):
    its streams' rows of the shared tables, its streams' tables in the schema listings.
    Each table by its full and its short name: ClickHouse matches the name as written."""
    if streams is None:
        return ""
    allowed = "(" + ", ".join(string_literal(s) for s in sorted(streams)) + ")" if streams else ""
    in_streams = f"stream IN {allowed}" if streams else "0"
    tables = (
        "(" + ", ".join(string_literal(f"events_{s}") for s in sorted(streams)) + ")"
        if streams
        else "('')"
    )
    pipeline = string_literal(database)
    listing = f"database != {pipeline} OR NOT startsWith(name, 'events_') OR name IN {tables}"
    columns = f"database != {pipeline} OR NOT startsWith(table, 'events_') OR table IN {tables}"
    filters = {f"system.{name}": listing for name in ("tables",)}
    filters["system.columns"] = columns
    for table in SHARED_TABLES:
        filters[f"{database}.{table}"] = in_streams
        filters[table] = in_streams
    return (
        "{"
        + ", ".join(f"{string_literal(k)}: {string_literal(v)}" for k, v in filters.items())
        + "}"
    )


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def client_settings(args: Any) -> tuple[dict[str, str], dict[str, str]]:
    """``(formatting settings, limits)`` a client sent (a limit counts only where it is lower
    than the key's); raises :class:`AccessDenied`, as a read-only server does, for any other
    setting."""
    allowed, limits = {}, {}
    for name, value in settings_of(args).items():
        if name in IGNORED or name in TRANSPORT:
            continue
        if name == "readonly" and value == "1":
            continue  # what it gets anyway
        if name in LIMITS:
            limits[name] = value
            continue
        if name in CLIENT_SETTINGS or name.startswith(CLIENT_SETTING_PREFIXES):
            allowed[name] = value
            continue
        raise AccessDenied(
            f"Cannot modify '{name[:64]}' setting in readonly mode: the limits of an analyst "
            "key are fixed by Riverbed",
            code=164,
        )
    return allowed, limits


async def authenticate(request: Request) -> KeyInfo:
    cache: KeyCache = request.app.state.keys
    _, password = credentials(request)  # the user name is free: the key says who
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        password = token.strip()
    if not password or len(password) > 512:
        raise AuthenticationFailed()
    key = await cache.verify(password)
    if key is None:
        raise AuthenticationFailed()
    if not key.allows(SCOPE):
        raise AccessDenied(f"the key {key.prefix} lacks scope {SCOPE}")
    return key


async def ping(request: Request) -> Response:
    return PlainTextResponse("Ok.\n")


async def query(request: Request) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    args = request.query_params
    query_id = f"sql-{uuid.uuid4()}"
    try:
        key = await authenticate(request)
        limit = settings.sql_max_query_bytes
        body = decompress(
            await read_body(request, limit), request.headers.get("content-encoding"), limit
        )
        sql, data = split_request(args.get("query"), body)
        if data:
            raise AccessDenied("this endpoint is read-only: events enter through the API", 164)
        params = {k[len("param_") :]: v for k, v in args.items() if k.startswith("param_")}
        current = args.get("database") or request.headers.get("x-clickhouse-database")
        reader = Reader.of(
            settings.clickhouse_database, key.allows("audit:read"), key.streams, current
        )
        extra, limits = client_settings(args)
        try:
            statement, fmt = await anyio.to_thread.run_sync(
                fence_with_format, state.engine, sql, reader, params or None
            )
        except QueryRefused as exc:
            raise _refusal(exc) from None
        fmt = fmt or args.get("default_format") or DEFAULT_FORMAT
        relay: EngineRelay = state.relay
        compressed = args.get("enable_http_compression") == "1"
        return await relay.run(
            request,
            key.prefix,
            statement,
            fmt,
            {**extra, **fixed_settings(settings, key.streams, limits)},
            query_id,
            params,
            current,
            request.headers.get("accept-encoding", "") if compressed else None,
        )
    except QueryFailed as exc:
        return error_response(exc, query_id)


def _refusal(exc: QueryRefused) -> QueryFailed:
    detail = str(exc.detail)
    if detail.startswith("not one statement ClickHouse can parse"):
        failed = QueryFailed(f"Code: 62. DB::Exception: {detail}. (SYNTAX_ERROR)")
        failed.http_status = 400
        return failed
    return AccessDenied(detail)


def create_app(settings: Settings, keys: ApiKeys | None = None) -> Starlette:
    """The analysts' endpoint over the pipeline's ClickHouse of ``settings``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = keys or ApiKeys(
            await anyio.to_thread.run_sync(control_sessions, settings), GRANTABLE
        )
        app.state.keys = KeyCache(store)
        url = settings.require_clickhouse()
        engine = await anyio.to_thread.run_sync(ServerEngine, url, 60.0)
        slots = Slots(settings.sql_slots, settings.sql_slots_per_key, settings.sql_queue_seconds)
        app.state.engine = engine
        app.state.relay = EngineRelay(url, engine, slots, settings.sql_timeout_seconds + 30)
        try:
            yield
        finally:
            await app.state.relay.aclose()
            engine.close()

    app = Starlette(
        routes=[
            Route("/ping", ping, methods=["GET", "HEAD"]),
            Route("/", query, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app


def run(settings: Settings) -> None:
    """``riverbed run sql``: the analysts' endpoint until SIGTERM."""
    import uvicorn

    from riverbed.core.heartbeat import start_heartbeat

    heartbeat = start_heartbeat(settings.require_redis(), "sql")
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.sql_port,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
    finally:
        heartbeat.stop()
