"""Build the sink runners; run them as threads (API process) or a process of their own."""

from __future__ import annotations

import logging
import signal
import threading

import redis
from confluent_kafka import Producer

from riverbed.core.clickhouse import ClickHouse, connect
from riverbed.core.heartbeat import start_heartbeat
from riverbed.core.kafka import consumer_config, producer_config
from riverbed.core.settings import Settings
from riverbed.core.topology import (
    CLICKHOUSE_SINK_GROUP,
    CLICKHOUSE_SINK_TOPICS,
    REDIS_SINK_GROUP,
    REDIS_SINK_TOPICS,
)
from schemas.bootstrap import join_catalog
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from sinks.clickhouse_writer import ClickHouseWriter
from sinks.dead_letters import DeadLetters
from sinks.redis_writer import RedisMetricsWriter
from sinks.runner import SinkRunner

log = logging.getLogger(__name__)


def clickhouse_runner(
    settings: Settings, engine: ClickHouse, registry: SchemaRegistry, catalog: StreamCatalog
) -> SinkRunner:
    dead_letters = DeadLetters(Producer(producer_config(settings)), registry, catalog)
    writer = ClickHouseWriter(engine, settings.clickhouse_database, registry, catalog, dead_letters)
    writer.ensure_tables()
    topics = list(CLICKHOUSE_SINK_TOPICS)
    return SinkRunner(
        consumer_config(settings, CLICKHOUSE_SINK_GROUP),
        topics,
        writer,
        settings.sink_batch_size,
        settings.sink_batch_timeout_seconds,
    )


def redis_runner(settings: Settings, registry: SchemaRegistry) -> SinkRunner:
    writer = RedisMetricsWriter(
        redis.Redis.from_url(settings.require_redis()),
        registry,
        settings.recent_series_length,
        settings.live_history_length,
    )
    # Live values want latency, not big batches: write each record as soon as it arrives,
    # with whatever arrived alongside it.
    return SinkRunner(
        consumer_config(settings, REDIS_SINK_GROUP),
        list(REDIS_SINK_TOPICS),
        writer,
        settings.sink_batch_size,
        0.5,
        eager=True,
    )


def run_until_signal(runners: list[SinkRunner]) -> None:
    """Run runners in threads until SIGTERM/SIGINT, then stop them and let them commit."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=r.run, name=f"sink-{r.writer.name}") for r in runners]
    for t in threads:
        t.start()
    while not stop.wait(0.5):
        if not all(t.is_alive() for t in threads):
            raise SystemExit("a sink thread died; exiting so the supervisor restarts us")
    for r in runners:
        r.stop()
    for t in threads:
        t.join(timeout=30)


def run_redis(settings: Settings) -> None:
    """``riverbed run sink-redis``."""
    run(settings, "redis")


def run_clickhouse(settings: Settings) -> None:
    """``riverbed run sink-clickhouse``: to ``CLICKHOUSE_URL`` (``riverbed up`` sets it to the
    embedded engine's front when no server is given)."""
    run(settings, "clickhouse")


def run(settings: Settings, which: str) -> None:
    """Run the ``redis`` or ``clickhouse`` sink until SIGTERM."""
    registry, catalog = join_catalog(settings)
    if which == "redis":
        runners = [redis_runner(settings, registry)]
    else:
        engine = connect(settings)
        runners = [clickhouse_runner(settings, engine, registry, catalog)]
    heartbeat = start_heartbeat(settings.require_redis(), f"sink-{which}")
    try:
        run_until_signal(runners)
    finally:
        heartbeat.stop()
