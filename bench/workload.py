"""The benchmarks' synthetic traffic: page views, and a producer that fills a topic with them.

Every benchmark that measures a stage against a raw-client ceiling pre-fills the stage's input
topic with real Avro records in the Confluent wire format, so both sides read the same bytes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Producer

from riverbed.core.settings import Settings
from schemas import codec
from schemas.registry import SchemaRegistry


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def page_view(i: int, ts: int, ingested_at: int) -> dict[str, Any]:
    """The ``i``-th page view as ``events.pageviews`` carries it: 1,000 users over 20 pages."""
    return {
        "user_id": f"u{i % 1000}",
        "page": f"/p{i % 20}",
        "referrer": None,
        "country": "DE",
        "load_ms": float(i % 300),
        "ts": ts,
        "event_id": uuid.uuid4().hex,
        "ingested_at": ingested_at,
    }


def produce(producer: Producer, topic: str, value: bytes, key: bytes | None) -> None:
    """Produce one record, waiting for deliveries while librdkafka's local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.01)


def fill(
    settings: Settings,
    registry: SchemaRegistry,
    topic: str,
    schema_id: int,
    records: Iterable[dict[str, Any]],
) -> None:
    """Encode ``records`` with ``schema_id`` into ``topic``, keyed by user like the agents."""
    producer = Producer(
        {
            "bootstrap.servers": settings.require_kafka(),
            "linger.ms": 20,
            "batch.num.messages": 10000,
        }
    )
    for record in records:
        value = codec.encode(registry, schema_id, record)
        produce(producer, topic, value, record["user_id"].encode())
    producer.flush()
