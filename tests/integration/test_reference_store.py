"""The agents' in-memory reference tables against the real embedded broker (tansu)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from riverbed.core.kafka import ensure_topics
from riverbed.core.settings import Settings
from riverbed.core.topology import reference_topic
from schemas.reference import REFERENCE_TOPIC_CONFIG
from streams.reference_store import ReferenceStore
from tests.conftest import Engines, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture()
def table(engines: Engines) -> str:
    name = f"t{uuid.uuid4().hex[:8]}"
    topic = reference_topic(name)
    settings = Settings(kafka_bootstrap=engines.kafka.url, topic_partitions=3)
    ensure_topics(settings, [topic], configs={topic: dict(REFERENCE_TOPIC_CONFIG)})
    return name


@pytest.fixture()
def producer(engines: Engines) -> Iterator[Producer]:
    producer = Producer({"bootstrap.servers": engines.kafka.url, "acks": "all", "linger.ms": 5})
    yield producer
    producer.flush(10)


def put(producer: Producer, table: str, key: str, value: dict | bytes | None) -> None:
    payload = json.dumps(value).encode() if isinstance(value, dict) else value
    producer.produce(reference_topic(table), payload, key.encode())


def test_the_store_is_ready_with_the_latest_entry_of_every_key_written_before_it_started(
    engines: Engines, table: str, producer: Producer
) -> None:
    for i in range(40):  # batched by the producer: tansu's offsets then count batches
        put(producer, table, f"p{i}", {"category": f"c{i}"})
    producer.flush(10)
    for i in range(0, 40, 4):
        put(producer, table, f"p{i}", {"category": f"updated{i}"})
        producer.flush(10)
    put(producer, table, "p1", None)  # a tombstone deletes the entry
    put(producer, table, "p2", b"not json")  # skipped; the last good entry stays
    producer.flush(10)

    store = ReferenceStore(engines.kafka.url, [table])
    store.start()
    try:
        store.wait_ready(timeout=30)
        expected = {
            f"p{i}": {"category": f"updated{i}" if i % 4 == 0 else f"c{i}"}
            for i in range(40)
            if i != 1
        }
        assert {f"p{i}": store.lookup(table, f"p{i}") for i in range(40) if i != 1} == expected
        assert store.lookup(table, "p1") is None
        assert store.lookup("other", "p3") is None
    finally:
        store.close()


def test_the_store_follows_entries_written_after_it_started(
    engines: Engines, table: str, producer: Producer
) -> None:
    store = ReferenceStore(engines.kafka.url, [table])
    store.start()
    try:
        store.wait_ready(timeout=30)  # an empty table is ready too
        assert store.lookup(table, "p1") is None
        put(producer, table, "p1", {"category": "books"})
        producer.flush(10)
        wait_until(lambda: store.lookup(table, "p1") == {"category": "books"}, 10)
        put(producer, table, "p1", {"category": "comics"})
        producer.flush(10)
        wait_until(lambda: store.lookup(table, "p1") == {"category": "comics"}, 10)
    finally:
        store.close()


def test_a_store_without_tables_is_ready_at_once() -> None:
    store = ReferenceStore("127.0.0.1:1", [])
    store.start()
    store.wait_ready(timeout=0.1)
    assert store.lookup("products", "p1") is None
