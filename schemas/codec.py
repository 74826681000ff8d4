"""Encode and decode pipeline records by schema id, and register the catalog's schemas.

Every process calls :func:`register_catalog` at start-up; registration is idempotent, so all of
them end up with the same ids (see :mod:`schemas.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import wire
from schemas.catalog import METRICS_TOPIC, StreamSpec, clean_topic, dlq_topic, events_topic
from schemas.registry import SchemaRegistry
from schemas.system import DEAD_LETTER_SCHEMA, METRIC_UPDATE_SCHEMA


def subject(topic: str) -> str:
    """TopicNameStrategy, as Confluent tools expect."""
    return f"{topic}-value"


@dataclass(frozen=True)
class StreamSchemaIds:
    ingest: int
    clean: int
    dead_letter: int


@dataclass(frozen=True)
class CatalogIds:
    streams: dict[str, StreamSchemaIds]
    metrics: int


def register_catalog(registry: SchemaRegistry, catalog: dict[str, StreamSpec]) -> CatalogIds:
    streams = {
        name: StreamSchemaIds(
            ingest=registry.register(subject(events_topic(name)), spec.ingest_schema),
            clean=registry.register(subject(clean_topic(name)), spec.clean_schema),
            dead_letter=registry.register(subject(dlq_topic(name)), DEAD_LETTER_SCHEMA),
        )
        for name, spec in catalog.items()
    }
    return CatalogIds(streams, registry.register(subject(METRICS_TOPIC), METRIC_UPDATE_SCHEMA))


def encode(registry: SchemaRegistry, schema_id: int, datum: dict[str, Any]) -> bytes:
    return wire.encode(schema_id, registry.parsed(schema_id), datum)


def decode(registry: SchemaRegistry, message: bytes) -> tuple[int, dict[str, Any]]:
    """``(writer_schema_id, record)`` with timestamps as epoch integers.

    Raises :class:`schemas.wire.WireFormatError` or :class:`schemas.registry.SchemaNotFound`.
    """
    schema_id, body = wire.split(message)
    return schema_id, wire.decode_body(body, registry.raw_parsed(schema_id))
