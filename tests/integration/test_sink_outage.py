"""A sink whose target goes away holds its batch and loses nothing when the target returns.

The Redis sink writes to a valkey of its own, which the test stops in the middle of the stream
and starts again on the same port and data dir (AOF), as an operator restarting Redis would.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka import Producer

from riverbed.core.kafka import consumer_config, ensure_topics
from riverbed.core.settings import Settings
from riverbed.core.topology import series_key
from riverbed.embedded import start_redis
from schemas import codec
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from sinks.redis_writer import RedisMetricsWriter
from sinks.runner import SinkRunner
from tests.conftest import Engines, wait_until
from tests.integration.test_sinks import update

pytestmark = pytest.mark.integration
WINDOWS = 60


def test_the_redis_sink_retries_through_a_redis_restart_and_loses_nothing(
    engines: Engines, tmp_path: Path
) -> None:
    registry_client = redis.Redis.from_url(engines.redis.url)
    registry = SchemaRegistry(registry_client)
    metrics_id = StreamCatalog(registry_client, registry).metrics_id
    settings = Settings(kafka_bootstrap=engines.kafka.url, redis_url=engines.redis.url)
    topic = f"test-sink-outage-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic])
    stream = f"outage_{uuid.uuid4().hex[:8]}"

    target = start_redis(tmp_path)
    port = int(target.url.rsplit(":", 1)[1].split("/")[0])
    client = redis.Redis.from_url(target.url)
    writer = RedisMetricsWriter(client, registry, series_length=WINDOWS * 2)
    runner = SinkRunner(
        consumer_config(settings, f"test-outage-{uuid.uuid4().hex}"), [topic], writer, 50, 0.1
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    producer = Producer({"bootstrap.servers": engines.kafka.url, "acks": "all"})

    def produce(starts: range) -> None:
        for start in starts:
            value = codec.encode(registry, metrics_id, update(stream, "*", start * 1000, 1, start))
            producer.produce(topic, value)
        assert producer.flush(30) == 0

    def stored() -> int:
        return int(client.zcard(series_key(stream, "*", "*")))

    try:
        produce(range(WINDOWS // 2))
        wait_until(lambda: stored() == WINDOWS // 2, 60, message="the first half in Redis")

        target.stop()
        produce(range(WINDOWS // 2, WINDOWS))
        wait_until(lambda: runner.last_error is not None, 60, message="the sink to see the outage")
        assert not runner.healthy.is_set()

        target = start_redis(tmp_path, port=port)
        wait_until(lambda: stored() == WINDOWS, 60, message="every window after the restart")
        wait_until(lambda: runner.last_error is None, 30, message="the sink to recover")
        counts = {
            int(score): json.loads(member)["count"]
            for member, score in client.zrange(series_key(stream, "*", "*"), 0, -1, withscores=True)
        }
        assert counts == {start * 1000: start for start in range(WINDOWS)}
    finally:
        runner.stop()
        thread.join(30)
        target.stop()
