"""Avro schemas of the topics Riverbed itself defines: dead letters, metric updates, audit."""

from __future__ import annotations

import time
from typing import Any

from schemas.catalog import TIMESTAMP_MILLIS

DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "DeadLetter",
    "namespace": "riverbed.system",
    "doc": "An input that could not be processed, kept whole so it can be inspected and replayed.",
    "fields": [
        {"name": "stream", "type": "string"},
        {"name": "stage", "type": "string", "doc": "ingest | process | aggregate | sink"},
        {"name": "error", "type": "string"},
        {"name": "original", "type": "bytes", "doc": "The bytes as received."},
        {"name": "event_id", "type": ["null", "string"], "default": None},
        {"name": "failed_at", "type": TIMESTAMP_MILLIS},
    ],
}

METRIC_UPDATE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "MetricUpdate",
    "namespace": "riverbed.system",
    "doc": (
        "A windowed aggregate of one numeric field (or of event counts, field '*'). Running values"
        " of an open window are re-emitted with a higher version; final=true closes the window."
    ),
    "fields": [
        {"name": "stream", "type": "string"},
        {"name": "group", "type": "string", "doc": "The group_by value, or '*' for all."},
        {"name": "field", "type": "string"},
        {"name": "window_start", "type": TIMESTAMP_MILLIS},
        {"name": "window_end", "type": TIMESTAMP_MILLIS},
        {"name": "count", "type": "long"},
        {"name": "sum", "type": "double"},
        {"name": "min", "type": ["null", "double"], "default": None},
        {"name": "max", "type": ["null", "double"], "default": None},
        {"name": "avg", "type": ["null", "double"], "default": None},
        {"name": "final", "type": "boolean"},
        {"name": "version", "type": "long", "doc": "Emission time in ms; later replaces earlier."},
    ],
}


METRIC_RESULT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "MetricResult",
    "namespace": "riverbed.system",
    "doc": (
        "One window of a declared metric for one group. Re-emitted with a higher version while"
        " the window is open or when a late event updates it; final=true when it closes;"
        " deleted=true retracts a session window that merged into another."
    ),
    "fields": [
        {"name": "metric", "type": "string"},
        {"name": "generation", "type": "string", "doc": "Fingerprint of the declaration."},
        {"name": "stream", "type": "string"},
        {"name": "group_key", "type": "string", "doc": "group_by values joined by '|'; '*'."},
        {"name": "group", "type": {"type": "map", "values": "string"}},
        {"name": "window_start", "type": TIMESTAMP_MILLIS},
        {"name": "window_end", "type": TIMESTAMP_MILLIS},
        {"name": "count", "type": "long", "doc": "Events counted (after the filter)."},
        {"name": "values", "type": {"type": "map", "values": "double"}},
        {"name": "final", "type": "boolean"},
        {"name": "deleted", "type": "boolean"},
        {"name": "version", "type": "long", "doc": "Emission time in ms; later replaces earlier."},
    ],
}


AUDIT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "AuditEvent",
    "namespace": "riverbed.system",
    "doc": "A security-relevant action: who did what, to what, when, from where, and how it went.",
    "fields": [
        {"name": "audit_id", "type": "string", "doc": "Unique; a retried write keeps it."},
        {"name": "at", "type": TIMESTAMP_MILLIS},
        {"name": "actor", "type": "string", "doc": "key:<prefix>, user:<id> or anonymous"},
        {"name": "actor_name", "type": "string", "doc": "The key's or user's name."},
        {"name": "action", "type": "string", "doc": "The route's operation, e.g. create_key."},
        {"name": "target", "type": "string", "doc": "What it acted on (path parameters)."},
        {"name": "outcome", "type": "string", "doc": "success | failure | denied"},
        {"name": "status", "type": "int", "doc": "The HTTP status answered."},
        {"name": "source_ip", "type": "string"},
        {"name": "request_id", "type": "string"},
        {"name": "details", "type": "string", "doc": "JSON: what else is worth keeping."},
    ],
}


def dead_letter(
    stream: str,
    stage: str,
    error: str,
    original: bytes,
    event_id: str | None = None,
    failed_at: int | None = None,
) -> dict[str, Any]:
    """A :data:`DEAD_LETTER_SCHEMA` datum; every stage builds its letters here."""
    return {
        "stream": stream,
        "stage": stage,
        "error": error,
        "original": original,
        "event_id": event_id,
        "failed_at": time.time_ns() // 1_000_000 if failed_at is None else failed_at,
    }
