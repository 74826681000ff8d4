"""Throughput of the Faust agents against the raw confluent-kafka ceiling, in the same run.

    python -m bench.agents --events 200000

Fills ``events.pageviews`` with real Avro records, then measures (1) a raw confluent-kafka
consume -> decode -> enrich -> encode -> produce loop, the ceiling for this machine and broker,
and (2) the Faust agents process (``riverbed run agents``) draining the same records into
``clean.pageviews`` (with dedup in Redis). Prints events/s of both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from confluent_kafka import Consumer, Producer

from riverbed.embedded import start_kafka, start_redis, wait_for
from riverbed.kafka import ensure_topics, pipeline_topics
from riverbed.settings import Settings
from riverbed.supervisor import Supervisor
from schemas import codec
from schemas.catalog import events_topic, load_catalog
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from streams.agents import stats_key
from streams.processing import ProcessingRules, enrich


def fill(settings: Settings, registry: SchemaRegistry, schema_id: int, total: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
        }
    )
    now = time.time_ns() // 1_000_000
    for i in range(total):
        datum = {
            "user_id": f"u{i % 1000}",
            "page": f"/p{i % 20}",
            "referrer": None,
            "country": "DE",
            "load_ms": float(i % 300),
            "ts": now,
            "event_id": uuid.uuid4().hex,
            "ingested_at": now,
        }
        while True:
            try:
                producer.produce(
                    events_topic("pageviews"),
                    codec.encode(registry, schema_id, datum),
                    datum["user_id"].encode(),
                )
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush()


def raw_loop(settings: Settings, registry: SchemaRegistry, clean_id: int, total: int) -> float:
    """The ceiling: one confluent consumer and producer, batch by batch, no framework."""
    spec = load_catalog(settings.schemas_dir)["pageviews"]
    rules = ProcessingRules(max_future_skew_ms=300_000)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    consumer.subscribe([events_topic("pageviews")])
    seen = 0
    started = None
    while seen < total:
        batch = consumer.consume(5000, 1.0)
        if not batch:
            continue
        started = started or time.perf_counter()
        now = time.time_ns() // 1_000_000
        for message in batch:
            if message.error():
                continue
            _, record = codec.decode(registry, message.value() or b"")
            out = codec.encode(registry, clean_id, enrich(spec, record, now, rules))
            while True:
                try:
                    producer.produce("bench.raw", out, message.key())
                    break
                except BufferError:
                    producer.poll(0.01)
            seen += 1
        producer.poll(0)
        producer.flush()
        consumer.commit(asynchronous=False)
    consumer.close()
    assert started is not None
    return total / (time.perf_counter() - started)


def faust_agents(settings: Settings, env: dict[str, str], data_dir: Path, total: int) -> float:
    client = redis.Redis.from_url(settings.require_redis())
    supervisor = Supervisor(data_dir / "logs", env)
    supervisor.add("agents")
    try:

        def processed() -> int:
            return int(client.hget(stats_key("pageviews"), "processed") or 0)

        if not wait_for(lambda: processed() > 0, 120, interval=0.01):
            raise SystemExit(f"agents processed nothing; see {data_dir / 'logs' / 'agents.log'}")
        started, first = time.perf_counter(), processed()
        if not wait_for(lambda: processed() >= total, 600, interval=0.05):
            raise SystemExit(f"agents stalled at {processed()} of {total}")
        return (total - first) / (time.perf_counter() - started)
    finally:
        supervisor.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="riverbed-bench-agents-") as tmp:
        data_dir = Path(tmp)
        kafka, valkey = start_kafka(data_dir), start_redis(data_dir)
        env = {
            "KAFKA_BOOTSTRAP": kafka.url,
            "REDIS_URL": valkey.url,
            "RIVERBED_DATA_DIR": str(data_dir),
        }
        try:
            settings = Settings(kafka_bootstrap=kafka.url, redis_url=valkey.url, data_dir=data_dir)
            client = redis.Redis.from_url(valkey.url)
            registry = SchemaRegistry(client)
            catalog = StreamCatalog(client, registry)
            catalog.bootstrap(load_catalog(settings.schemas_dir))
            ensure_topics(settings, [*pipeline_topics(catalog.specs()), "bench.raw"])
            ids = catalog.ids("pageviews")
            fill(settings, registry, ids.ingest, args.events)
            raw = raw_loop(settings, registry, ids.clean, args.events)
            agents = faust_agents(settings, env, data_dir, args.events)
        finally:
            valkey.stop()
            kafka.stop()
    result = {
        "events": args.events,
        "raw_confluent_loop_per_s": round(raw),
        "faust_agents_per_s": round(agents),
        "ratio": round(agents / raw, 3),
        "machine": f"{os.cpu_count()} cores, python {sys.version.split()[0]}",
    }
    print(json.dumps(result, indent=2))
    print(f"\nraw confluent-kafka loop  {raw:>9.0f} events/s   (ceiling)")
    print(f"faust agents              {agents:>9.0f} events/s   ({agents / raw:.1%} of ceiling)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
