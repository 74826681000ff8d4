"""What the agents do to one event, as plain functions over plain data (no Kafka here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.catalog import StreamSpec


class EventRejected(ValueError):
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


def dedup_key(stream: str, event_id: str) -> str:
    return f"riverbed:dedup:{stream}:{event_id}"


def source_position(topic: str, partition: int, offset: int) -> str:
    """Identifies one Kafka record; a redelivery of it is not a duplicate, a re-post is."""
    return f"{topic}/{partition}/{offset}"
