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
- **how much**: ``readonly=1`` and the limits of the key's roles (time, memory, result rows
  and bytes, threads; :mod:`api.sql_limits`) fixed here as settings; a client may change only
  formatting settings and lower a limit, anything else is refused as a read-only server
  refuses it (code 164);
- **how many**: a query slot per running query, a few per key, so analysts queue among
  themselves instead of crowding the sink off the engine; a query whose client goes away is
  killed on the engine;
- **who asked what**: an audit record per query, refusals included.

It is a process of its own (``riverbed run sql``), so a heavy export never shares an event loop
with ingest or ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api.audit import DENIED, AuditWriter, audit_event, outcome_of, write
from api.auth import KeyCache
from api.clickhouse_protocol import (
    DEFAULT_FORMAT,
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
from api.slow_clients import header_timeout_protocol
from api.sql_fence import QueryRefused, Reader, fence_with_format
from api.sql_limits import LIMITS, fixed_settings
from control.db import control_sessions
from control.keys import ApiKeys, KeyInfo
from control.scopes import GRANTABLE
from riverbed.core.clickhouse import ServerEngine
from riverbed.core.kafka import AsyncProducer, producer_config
from riverbed.core.settings import Settings
from schemas.bootstrap import join_catalog

log = logging.getLogger(__name__)
SCOPE = "query:sql"
ACTION = "clickhouse_query"  # the audit trail's name for a query of this endpoint
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


class AccessDenied(QueryFailed):
    http_status = 403

    def __init__(self, detail: str, code: int = 497) -> None:
        name = "READONLY" if code == 164 else "ACCESS_DENIED"
        super().__init__(f"Code: {code}. DB::Exception: {detail}. ({name})")


def client_settings(args: Any) -> tuple[dict[str, str], dict[str, str]]:
    """``(formatting settings, limits)`` a client sent (a limit counts only where it is lower
    than the key's); raises :class:`AccessDenied`, as a read-only server does, for any other
    setting."""
    allowed, limits = {}, {}
    # settings_of leaves out the interface's own parameters: session_id and query_id among
    # them, which this endpoint decides itself (a session would let state outlive a query).
    for name, value in settings_of(args).items():
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
    query_id = f"sql-{uuid.uuid4()}"
    asked = Asked(query_id)
    try:
        asked.key = await authenticate(request)
        response = await run_query(request, asked)
    except QueryFailed as exc:
        response = error_response(exc, query_id)
        asked.error = str(exc)[:500]
    if settings.sql_audit:
        audit(request, asked, response.status_code)
    return response


@dataclass
class Asked:
    """What the audit record of one query says: who asked what, and what came of it."""

    query_id: str
    key: KeyInfo | None = None
    sql: str = ""
    format: str = ""
    error: str = ""


async def run_query(request: Request, asked: Asked) -> Response:
    """Read, fence and run the query of an authenticated request; raises :class:`QueryFailed`."""
    state = request.app.state
    settings: Settings = state.settings
    args = request.query_params
    key = asked.key
    assert key is not None
    limit = settings.sql_max_query_bytes
    body = decompress(
        await read_body(request, limit), request.headers.get("content-encoding"), limit
    )
    sql, data = split_request(args.get("query"), body)
    asked.sql = sql[:2000]
    if data:
        raise AccessDenied("this endpoint is read-only: events enter through the API", 164)
    params = {k[len("param_") :]: v for k, v in args.items() if k.startswith("param_")}
    current = args.get("database") or request.headers.get("x-clickhouse-database")
    reader = Reader.of(settings.clickhouse_database, key.allows("audit:read"), key.streams, current)
    extra, limits = client_settings(args)
    decisions: Decisions = state.decisions
    try:
        statement, fmt = await decisions.fence(state.engine, sql, reader, params or None)
    except QueryRefused as exc:
        raise _refusal(exc) from None
    asked.format = fmt = fmt or args.get("default_format") or DEFAULT_FORMAT
    relay: EngineRelay = state.relay
    compressed = args.get("enable_http_compression") == "1"
    return await relay.run(
        request,
        key.prefix,
        statement,
        fmt,
        {**extra, **fixed_settings(settings, key.streams, key.roles, limits)},
        asked.query_id,
        params,
        current,
        request.headers.get("accept-encoding", "") if compressed else None,
    )


def audit(request: Request, asked: Asked, status: int) -> None:
    """Write the query's audit record in the background (the answer does not wait for the
    broker); the tasks are awaited at shutdown."""
    writer: AuditWriter | None = getattr(request.app.state, "audit_writer", None)
    if writer is None:
        return
    key = asked.key
    actor, name = (f"key:{key.prefix}", key.name) if key else ("anonymous", "")
    details = {"query_id": asked.query_id, "sql": asked.sql, "format": asked.format}
    if asked.error:
        details["error"] = asked.error
    if key is None:
        details["user"] = credentials(request)[0][:200]
    outcome = DENIED if status in (401, 403) else outcome_of(status)
    event = audit_event(actor, name, ACTION, "", status, outcome, request, details)
    task = asyncio.create_task(write(writer, event))
    pending: set[asyncio.Task[None]] = request.app.state.audits
    pending.add(task)
    task.add_done_callback(pending.discard)


class Decisions:
    """The fence's recent decisions, by statement text and reader: dashboards send the same
    queries again and again, and each decision costs two round trips to the engine. Only
    statements let through are kept; the values of parameters play no part in the decision
    (they are bound as data after parsing, and the engine still checks their types)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._kept: OrderedDict[tuple[str, Reader], tuple[str, str | None]] = OrderedDict()

    async def fence(
        self, engine: ServerEngine, sql: str, reader: Reader, params: dict[str, str] | None
    ) -> tuple[str, str | None]:
        key = (sql, reader)
        found = self._kept.get(key)
        if found is not None:
            self._kept.move_to_end(key)
            return found
        decided = await anyio.to_thread.run_sync(fence_with_format, engine, sql, reader, params)
        self._kept[key] = decided
        if len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return decided


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
        app.state.decisions = Decisions()
        app.state.relay = EngineRelay(url, engine, slots, settings.sql_timeout_seconds + 30)
        app.state.audits = set()
        producer = None
        if settings.sql_audit:
            registry, catalog = await anyio.to_thread.run_sync(join_catalog, settings)
            producer = AsyncProducer(producer_config(settings))
            app.state.audit_writer = AuditWriter(registry, catalog, producer)
        try:
            yield
        finally:
            if app.state.audits:
                await asyncio.wait(app.state.audits, timeout=10)
            if producer is not None:
                producer.close()
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
            http=header_timeout_protocol(settings.header_read_timeout_seconds),
        )
    finally:
        heartbeat.stop()
