"""The ``_schemas`` topic: the registry's change log, as the Confluent registry keeps it.

Redis holds the live state; this compacted topic holds every change, so either can rebuild the
other: an empty Redis is restored from the log, an empty log (the embedded broker keeps topics in
memory) is re-seeded from Redis. Keys and values are JSON in Confluent's shape.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.core.errors import Unavailable
from riverbed.core.topology import REGISTRY_READER_GROUP, SCHEMAS_TOPIC
from schemas.registry import SchemaRegistry

log = logging.getLogger(__name__)


class SchemaLogError(Unavailable):
    """A change could not be appended to the log."""


class KafkaSchemaLog:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"}
        )

    def ensure_topic(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        if SCHEMAS_TOPIC in admin.list_topics(timeout=10).topics:
            return
        future = admin.create_topics(
            [NewTopic(SCHEMAS_TOPIC, 1, 1, config={"cleanup.policy": "compact"})]
        )
        try:
            future[SCHEMAS_TOPIC].result()
        except KafkaException as exc:
            log.info("creating %s: %s", SCHEMAS_TOPIC, exc)

    def append(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        errors: list[str] = []
        self._producer.produce(
            SCHEMAS_TOPIC,
            None if value is None else json.dumps(value).encode(),
            json.dumps(key, sort_keys=True).encode(),
            on_delivery=lambda err, _m: errors.append(err.str()) if err else None,
        )
        if self._producer.flush(30) or errors:
            raise SchemaLogError(f"{SCHEMAS_TOPIC} did not acknowledge a change: {errors}")

    def read_all(self, idle: float = 1.0) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Every record from the beginning, until the topic stays quiet for ``idle`` seconds."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": REGISTRY_READER_GROUP,
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(SCHEMAS_TOPIC, 0, 0)])
        records: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        try:
            while True:
                batch = [m for m in consumer.consume(1000, idle) if m.error() is None]
                if not batch:
                    return records
                for m in batch:
                    value = m.value()
                    records.append(
                        (json.loads(m.key() or b"{}"), None if value is None else json.loads(value))
                    )
        finally:
            consumer.close()


def reconcile(registry: SchemaRegistry, schema_log: KafkaSchemaLog) -> str:
    """Make Redis and the log agree at start-up; returns what was done, for the log line."""
    schema_log.ensure_topic()
    records = schema_log.read_all()
    if registry.is_empty() and records:
        return f"restored {registry.restore(records)} registry records from {SCHEMAS_TOPIC}"
    if not records and not registry.is_empty():
        exported = registry.export()
        for key, value in exported:
            schema_log.append(key, value)
        return f"re-seeded {SCHEMAS_TOPIC} with {len(exported)} records from Redis"
    return "registry and log agree"
