"""The Starlette application and its start-up wiring.

The API reads ClickHouse and never writes stream tables: the ClickHouse sink is a process of
its own (``riverbed run sink-clickhouse``), whether ClickHouse is a server or the embedded one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Sequence

import anyio.to_thread
import redis
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from api import metrics
from api.auth import CredentialBackend, Identity, build_identity, refuse
from api.endpoint import Endpoint
from api.engine_relay import EngineRelay, Slots
from api.heap import keep_frozen
from api.ingest.batch import LateCheck
from api.ingest.journal import JournalJanitor, replay
from api.ingest.service import Ingestor
from api.live.hub import Hub
from api.live.stream import keep_server_send
from api.middleware import ResponseHeaders, allowed_hosts
from api.problems import EXCEPTION_HANDLERS
from api.ratelimit import RateLimiter
from api.reference import declared_tables
from api.routes import ROUTES, starlette_routes
from api.services import Services
from api.slow_clients import header_timeout_protocol
from api.stores.audit import AuditStore
from api.stores.dead_letters import DeadLetterStore
from api.stores.events import EventStore
from api.stores.live import LiveValues
from api.stores.metric_results import MetricResultStore
from riverbed.core.breaker import CircuitBreaker
from riverbed.core.clickhouse import connect
from riverbed.core.first_copies import FirstCopies
from riverbed.core.heartbeat import start_heartbeat
from riverbed.core.journal import Journal, JournalWriter
from riverbed.core.kafka import AsyncProducer, producer_config
from riverbed.core.settings import Settings
from schemas.bootstrap import bootstrap_catalog
from streams.metrics.store import MetricStore
from streams.reference_store import ReferenceStore

log = logging.getLogger(__name__)


def open_journal(settings: Settings) -> JournalWriter:
    """The ingest journal of ``settings``' data dir, written by this (the only) API process."""
    return JournalWriter(
        Journal(
            settings.journal_dir,
            segment_bytes=settings.journal_segment_bytes,
            segment_seconds=settings.journal_segment_seconds,
            max_bytes=settings.journal_max_bytes,
        )
    )


async def start_journal(app: Starlette, services: Services) -> asyncio.Task[None] | None:
    """With a journal: replay it into a new broker before ingest opens, then keep deleting
    the segments whose events are stored (the janitor's task, returned)."""
    writer = services.ingestor.journal
    if writer is None:
        return None
    settings = services.settings
    replayed = await replay(
        settings, writer.journal, services.producer, services.ingestor.first_copies
    )
    app.state.journal_janitor = janitor = JournalJanitor(
        writer.journal,
        services.clickhouse,
        settings.clickhouse_database,
        settings.journal_retention_seconds,
        lambda: services.catalog.specs().keys(),
    )
    janitor.replayed = replayed
    return asyncio.create_task(janitor.run())


def build_services(settings: Settings) -> Services:
    registry, catalog = bootstrap_catalog(settings)
    catalog.follow()  # handlers read a snapshot; a thread keeps it fresh (no I/O on the loop)
    engine = connect(settings)
    # The breaker turns a dead broker into an immediate 503 instead of a 10 s wait per request.
    producer = AsyncProducer(producer_config(settings), CircuitBreaker(cooldown=1.0))
    # Callers wait for a free connection (up to 5 s) instead of failing when all are busy: a
    # thousand live clients reading their snapshots at once must queue, not get errors.
    async_redis = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            settings.require_redis(), max_connections=settings.redis_connections, timeout=5
        )
    )
    sync_redis = redis.Redis.from_url(settings.require_redis())
    database = settings.clickhouse_database
    services = Services(
        settings=settings,
        catalog=catalog,
        registry=registry,
        producer=producer,
        ingestor=Ingestor(
            catalog,
            registry,
            producer,
            max_event_bytes=settings.max_event_bytes,
            max_future_ms=settings.max_future_skew_seconds * 1000,
            first_copies=FirstCopies(async_redis, settings.dedup_horizon_seconds),
            late=LateCheck(
                settings.window_seconds * 1000, settings.allowed_lateness_seconds * 1000
            ),
            journal=open_journal(settings) if settings.journal else None,
        ),
        events=EventStore(engine, database),
        dead_letters=DeadLetterStore(engine, database, sync_redis),
        metric_results=MetricResultStore(engine, database),
        live=LiveValues(async_redis),
        audit=AuditStore(engine, database),
        redis=async_redis,
        sync_redis=sync_redis,
        clickhouse=engine,
        metric_store=MetricStore(
            redis.Redis.from_url(settings.require_redis()),
            catalog.specs,
            settings.allowed_lateness_seconds * 1000,
        ),
        # Follows the ref.* topics for GET /v1/reference; loads in the background.
        reference=ReferenceStore(
            settings.require_kafka(), declared_tables(settings.schemas_dir).keys()
        ),
        hub=Hub(
            async_redis,
            settings.require_redis(),
            settings.live_queue_length,
            settings.live_connections_per_caller,
            settings.live_max_connections,
            settings.sse_heartbeat_seconds,
        ),
        relay=EngineRelay(
            settings.require_clickhouse(),
            engine,
            Slots(settings.sql_slots, settings.sql_slots_per_key, settings.sql_queue_seconds),
            settings.sql_timeout_seconds + 30,
        ),
    )
    services.reference.start()
    metrics.sync_metrics_file(services)
    return services


def create_app(
    settings: Settings,
    middleware: Sequence[Middleware] = (),
    endpoints: tuple[Endpoint, ...] = ROUTES,
    identity: Identity | None = None,
) -> Starlette:
    """The app the Starlette way: a router built from the route table, a middleware stack
    (headers, Host check, authentication), the one set of exception handlers, and the services
    built once at start-up and handed to every handler through ``app.state``.

    ``identity`` holds the stores of keys, users and sessions; by default those of the
    control-plane database of ``settings``, opened (and migrated) at start-up."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if identity is None:
            app.state.identity = await anyio.to_thread.run_sync(build_identity, settings)
        services = await anyio.to_thread.run_sync(build_services, settings)
        app.state.services = services
        janitor = await start_journal(app, services)
        if settings.rate_limits:
            app.state.rate_limiter = RateLimiter(services.redis, settings)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, services.ingestor.close)
        heartbeat = await anyio.to_thread.run_sync(start_heartbeat, settings.require_redis(), "api")
        follower = asyncio.create_task(metrics.follow_metrics_file(services))
        try:
            yield
        finally:
            if janitor is not None:
                janitor.cancel()
            follower.cancel()
            heartbeat.stop()
            services.reference.close()
            await services.relay.aclose()
            await services.hub.close()
            services.producer.close()
            if services.ingestor.journal is not None:
                services.ingestor.journal.close()
            services.catalog.stop()
            await services.redis.aclose()
            services.clickhouse.close()

    app = Starlette(
        routes=starlette_routes(endpoints),
        middleware=[
            Middleware(ResponseHeaders),
            Middleware(
                TrustedHostMiddleware,
                allowed_hosts=allowed_hosts(settings.host, settings.allowed_hosts),
            ),
            *cors(settings),
            Middleware(AuthenticationMiddleware, backend=CredentialBackend(), on_error=refuse),
            *middleware,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.endpoints = endpoints
    app.state.settings = settings
    app.state.cors_origins = frozenset(settings.cors_origin_list)
    if identity is not None:
        app.state.identity = identity
    return app


def cors(settings: Settings) -> list[Middleware]:
    """Cross-origin access for the configured origins only (none by default). Placed before
    authentication: a browser's preflight carries no credentials."""
    if not settings.cors_origin_list:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "RateLimit",
                "RateLimit-Policy",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
            allow_credentials=True,
            max_age=600,
        )
    ]


def run(settings: Settings) -> None:
    raise_open_files_limit(settings.max_connections + settings.live_max_connections + 256)
    app = create_app(settings)
    config = uvicorn.Config(
        keep_server_send(app),
        host=settings.host,
        port=settings.api_port,
        log_level="warning",
        lifespan="on",
        # Idle keep-alive connections are closed after a few seconds, and past the limits
        # new ones get a 503 rather than exhausting the process (live streams have their own
        # limit in the hub, inside this one).
        timeout_keep_alive=5,
        limit_concurrency=settings.max_connections + settings.live_max_connections,
        http=header_timeout_protocol(settings.header_read_timeout_seconds),
    )
    ApiServer(config, app).run()


class ApiServer(uvicorn.Server):
    """uvicorn's server, which ends the live streams when it stops (it waits for open
    responses to end before it stops, and a live stream would never end by itself), and keeps
    the collector's pauses off them while it runs (:mod:`api.heap`)."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    async def main_loop(self) -> None:
        heap = asyncio.create_task(keep_frozen(), name="heap")
        try:
            await super().main_loop()
        finally:
            heap.cancel()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        services: Services | None = getattr(self.app.state, "services", None)
        if services is not None:
            services.hub.shutdown()
        await super().shutdown(sockets)


def raise_open_files_limit(wanted: int) -> None:
    """Lift this process's soft limit of open files towards ``wanted`` (each connection is
    one); say so when the hard limit is lower, as connections past it would fail."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "open files are limited to %d here, fewer than the %d connections allowed; "
            "raise the hard limit (ulimit -Hn) or lower RIVERBED_LIVE_MAX_CONNECTIONS",
            target,
            wanted,
        )
