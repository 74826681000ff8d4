"""Read pipeline topics from the beginning, as a consumer outside Riverbed would."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas import codec
from schemas.registry import SchemaRegistry
from tests.conftest import Pipeline


class TopicReader:
    """Reads topics from the beginning with an assigned consumer, keeping records by event_id."""

    def __init__(self, pipeline: Pipeline, topics: list[str], event_ids: set[str]) -> None:
        self.event_ids = event_ids
        self.registry = SchemaRegistry(redis.Redis.from_url(pipeline.engines.redis.url))
        self.consumer = Consumer(
            {
                "bootstrap.servers": pipeline.engines.kafka.url,
                "group.id": f"test-routing-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
            }
        )
        metadata = self.consumer.list_topics(timeout=10).topics
        self.consumer.assign(
            [
                TopicPartition(topic, partition, OFFSET_BEGINNING)
                for topic in topics
                for partition in metadata[topic].partitions
            ]
        )
        # topic -> event_id -> every copy read (key, record)
        self.records: dict[str, dict[str, list[tuple[bytes, dict[str, Any]]]]] = defaultdict(
            lambda: defaultdict(list)
        )

    def poll(self) -> None:
        for message in self.consumer.consume(1000, 0.2):
            if message.error() is not None:
                continue
            _, record = codec.decode(self.registry, message.value())
            if record["event_id"] in self.event_ids:
                self.records[message.topic()][record["event_id"]].append((message.key(), record))

    def ids(self, topic: str) -> set[str]:
        return set(self.records[topic])

    def record(self, topic: str, event_id: str) -> dict[str, Any]:
        return self.records[topic][event_id][0][1]

    def close(self) -> None:
        self.consumer.close()
