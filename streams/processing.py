"""What the agents do to one event, as plain functions over plain data (no Kafka here)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from riverbed.core.errors import Invalid
from schemas.catalog import StreamSpec
from schemas.reference import lookup_key

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


def source_position(topic: str, partition: int, offset: int) -> str:
    """Identifies one Kafka record; a redelivery of it is not a duplicate, a re-post is."""
    return f"{topic}/{partition}/{offset}"
