"""Encode and decode pipeline records by schema id (see :mod:`schemas.registry`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import wire
from schemas.registry import SchemaRegistry
from schemas.registry_errors import SchemaNotFound


def subject(topic: str) -> str:
    """TopicNameStrategy, as Confluent tools expect."""
    return f"{topic}-value"


@dataclass(frozen=True)
class StreamSchemaIds:
    ingest: int
    clean: int
    dead_letter: int


def encode(registry: SchemaRegistry, schema_id: int, datum: dict[str, Any]) -> bytes:
    return wire.encode(schema_id, registry.parsed(schema_id), datum)


def decode(
    registry: SchemaRegistry, message: bytes, reader_id: int | None = None
) -> tuple[int, dict[str, Any]]:
    """``(writer_schema_id, record)`` with timestamps as epoch integers.

    With ``reader_id`` the record is resolved from its writer schema to that reader schema
    (Avro schema resolution: defaults fill added fields, removed fields are dropped, numeric
    types are promoted), so consumers see one shape whatever version produced the record.
    Raises :class:`schemas.wire.WireFormatError` or :class:`schemas.registry.SchemaNotFound`.
    """
    schema_id, body = wire.split(message)
    if reader_id is None or reader_id == schema_id:
        return schema_id, wire.decode_body(body, registry.raw_parsed(schema_id))
    writer, reader = registry.resolving(schema_id, reader_id)
    return schema_id, wire.decode_body(body, writer, reader)


def event_id_of(registry: SchemaRegistry, raw: bytes) -> str | None:
    """The ``event_id`` of a record that could not be processed, read with its own writer
    schema, so that its dead letter can be found by the id the producer was given; None when
    the record cannot be read at all."""
    try:
        _, record = decode(registry, raw)
    except (wire.WireFormatError, SchemaNotFound, ValueError, KeyError, TypeError, EOFError):
        return None
    event_id = record.get("event_id")
    return event_id if isinstance(event_id, str) else None
