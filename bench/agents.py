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
import time
import uuid
from pathlib import Path

import redis
from confluent_kafka import Consumer, Producer

from bench.drain import Progress, drain_rate
from bench.stack import bench_stack
from bench.workload import fill, now_ms, page_view, produce
from riverbed.core.settings import Settings
from riverbed.core.topology import events_topic, stats_key
from riverbed.supervisor import Supervisor
from schemas import codec
from schemas.catalog import load_catalog
from schemas.registry import SchemaRegistry
from streams.processing import ProcessingRules, enrich


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
        now = now_ms()
        for message in batch:
            if message.error():
                continue
            _, record = codec.decode(registry, message.value() or b"")
            out = codec.encode(registry, clean_id, enrich(spec, record, now, rules))
            produce(producer, "bench.raw", out, message.key())
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
    child = supervisor.add("agents")
    try:

        def processed() -> Progress:
            return Progress(
                int(client.hget(stats_key("pageviews"), "processed") or 0), time.monotonic()
            )

        return drain_rate(processed, total, child)
    finally:
        supervisor.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args(argv)
    with bench_stack("riverbed-bench-agents-", ["bench.raw"]) as stack:
        settings, registry = stack.settings, stack.registry
        ids = stack.catalog.ids("pageviews")
        now = now_ms()
        views = (page_view(i, now, now) for i in range(args.events))
        fill(settings, registry, events_topic("pageviews"), ids.ingest, views)
        raw = raw_loop(settings, registry, ids.clean, args.events)
        agents = faust_agents(settings, stack.env, stack.data_dir, args.events)
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
