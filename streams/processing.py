"""What the agents do to one event, as plain functions over plain data (no Kafka here)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from riverbed.core.errors import Invalid
from schemas import codec, wire
from schemas.catalog import StreamSpec
from schemas.reference import lookup_key
from schemas.registry import SchemaRegistry
from schemas.registry_errors import SchemaNotFound
from schemas.stream_catalog import StreamCatalog
from schemas.wire import WireFormatError

# (table, key) -> the reference entry, or None when the table has none for that key.
ReferenceLookup = Callable[[str, str], Mapping[str, Any] | None]


class EventRejected(Invalid):
    """The event cannot enter ``clean.*``; the message becomes the dead letter's reason."""


@dataclass(frozen=True)
class ProcessingRules:
    max_future_skew_ms: int


def enrich(spec: StreamSpec, record: dict[str, Any], now_ms: int, rules: ProcessingRules) -> dict:
    """Add ``event_time`` (the stream's time field, else the ingest time) and ``processed_at``.

    Raises :class:`EventRejected` for an event stamped further in the future than the allowed
    clock skew: it would hold a window open and distort every live value downstream.
    """
    event_time = record.get(spec.time_field) if spec.time_field else None
    if event_time is None:
        event_time = record["ingested_at"]
    if event_time > now_ms + rules.max_future_skew_ms:
        raise EventRejected(
            f"event_time {event_time} is {(event_time - now_ms) / 1000:.0f}s in the future "
            f"(allowed skew {rules.max_future_skew_ms / 1000:.0f}s)"
        )
    enriched = dict(record)
    enriched["event_time"] = event_time
    enriched["processed_at"] = now_ms
    return enriched


@dataclass(frozen=True)
class Decoded:
    """A record of ``events.*`` as the agents read it: in the stream's latest shape, enriched."""

    spec: StreamSpec
    clean_id: int  # the clean schema it is written to clean.* with
    record: dict[str, Any]


def decode_and_enrich(
    registry: SchemaRegistry,
    catalog: StreamCatalog,
    stream: str,
    raw: bytes,
    now_ms: int,
    rules: ProcessingRules,
) -> Decoded:
    """Resolve whatever schema version wrote ``raw`` to the stream's latest, then :func:`enrich`.

    The one place that decides whether a record can be processed: the agents call it for every
    record, and dead-letter replay calls it before putting a record back, so that replay does
    not report as replayed what would come straight back to the dead letters. Raises
    :data:`NOT_PROCESSABLE` errors.
    """
    writer_id = wire.split(raw)[0]
    ids = catalog.reader_ids(stream, writer_id)
    spec = catalog.get(stream)
    _, record = codec.decode(registry, raw, reader_id=ids.ingest)
    return Decoded(spec, ids.clean, enrich(spec, record, now_ms, rules))


# What decode_and_enrich raises for a record that cannot be processed (a dead letter's reason).
NOT_PROCESSABLE = (WireFormatError, SchemaNotFound, EventRejected, KeyError)


def add_reference_attributes(
    spec: StreamSpec, record: dict[str, Any], lookup: ReferenceLookup
) -> dict[str, Any]:
    """Set every enriched field of ``record`` (in place) from its reference entry.

    An event whose key field is null, or whose key has no entry, gets nulls: enrichment never
    rejects an event, the fields are nullable in the clean schema for exactly this reason.
    """
    for enrichment in spec.enrich:
        key = lookup_key(record.get(enrichment.key))
        entry = lookup(enrichment.table, key) if key is not None else None
        record.update(enrichment.attributes(entry))
    return record


def no_references(table: str, key: str) -> None:
    """The lookup of a worker that follows no reference tables."""
    return None
