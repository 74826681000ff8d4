"""Build the sink runners; run them as threads (API process) or a process of their own."""

from __future__ import annotations

import logging
import signal
import threading

import redis
from confluent_kafka import Producer

from riverbed.heartbeat import start_heartbeat
from riverbed.kafka import consumer_config, producer_config
from riverbed.settings import Settings
from riverbed.wiring import join_catalog
from schemas.catalog import METRIC_RESULTS_TOPIC, METRICS_TOPIC
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from sinks.clickhouse import ClickHouse, connect
from sinks.clickhouse_writer import ClickHouseWriter
from sinks.dead_letters import DeadLetters
from sinks.redis_writer import RedisMetricsWriter
from sinks.runner import SinkRunner

log = logging.getLogger(__name__)
CLICKHOUSE_GROUP = "riverbed-sink-clickhouse"
REDIS_GROUP = "riverbed-sink-redis"


def clickhouse_runner(
    settings: Settings, engine: ClickHouse, registry: SchemaRegistry, catalog: StreamCatalog
) -> SinkRunner:
    dead_letters = DeadLetters(Producer(producer_config(settings)), registry, catalog)
    writer = ClickHouseWriter(engine, settings.clickhouse_database, registry, catalog, dead_letters)
    writer.ensure_tables()
    # Regex subscriptions: topics of streams created at run time are picked up on their own.
    topics = [r"^clean\..+", r"^dlq\..+", METRICS_TOPIC, METRIC_RESULTS_TOPIC]
    return SinkRunner(
        consumer_config(settings, CLICKHOUSE_GROUP),
        topics,
        writer,
        settings.sink_batch_size,
        settings.sink_batch_timeout_seconds,
    )


def redis_runner(settings: Settings, registry: SchemaRegistry) -> SinkRunner:
    writer = RedisMetricsWriter(
        redis.Redis.from_url(settings.require_redis()), registry, settings.recent_series_length
    )
    # Live values want latency, not big batches: hand over whatever arrived within 100 ms.
    return SinkRunner(
        consumer_config(settings, REDIS_GROUP),
        [METRICS_TOPIC, METRIC_RESULTS_TOPIC],
        writer,
        settings.sink_batch_size,
        0.1,
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


def run(settings: Settings, which: str) -> None:
    """``riverbed run sink-redis`` / ``sink-clickhouse`` (the latter only with CLICKHOUSE_URL,
    since embedded chdb belongs to the API process)."""
    registry, catalog = join_catalog(settings)
    if which == "redis":
        runners = [redis_runner(settings, registry)]
    else:
        engine = connect(settings.clickhouse_url, settings.chdb_path)
        runners = [clickhouse_runner(settings, engine, registry, catalog)]
    heartbeat = start_heartbeat(settings.require_redis(), f"sink-{which}")
    try:
        run_until_signal(runners)
    finally:
        heartbeat.stop()
