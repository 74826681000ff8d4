"""enrich: event time from the time field or the ingest time, and the future-skew fence."""

from __future__ import annotations

from typing import Any

import pytest

from riverbed.core.first_copies import source_position
from riverbed.core.topology import dedup_key
from schemas.catalog import StreamSpec
from streams.processing import EventRejected, ProcessingRules, enrich

TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
RULES = ProcessingRules(max_future_skew_ms=60_000)
NOW = 1_700_000_000_000


def spec(time_field: str | None) -> StreamSpec:
    schema = {
        "type": "record",
        "name": "Click",
        "fields": [
            {"name": "user_id", "type": "string"},
            {"name": "ts", "type": ["null", TS_MILLIS], "default": None},
        ],
    }
    return StreamSpec(name="clicks", schema=schema, key_field="user_id", time_field=time_field)


def record(**values: Any) -> dict[str, Any]:
    return {"user_id": "u1", "ts": None, "event_id": "e1", "ingested_at": NOW - 5000, **values}


def test_event_time_comes_from_the_time_field() -> None:
    enriched = enrich(spec("ts"), record(ts=NOW - 9000), NOW, RULES)
    assert enriched["event_time"] == NOW - 9000


def test_event_time_falls_back_to_ingest_time_when_the_time_field_is_null() -> None:
    assert enrich(spec("ts"), record(ts=None), NOW, RULES)["event_time"] == NOW - 5000


def test_event_time_is_the_ingest_time_when_the_stream_has_no_time_field() -> None:
    enriched = enrich(spec(None), record(ts=NOW - 9000), NOW, RULES)
    assert enriched["event_time"] == NOW - 5000


def test_processed_at_is_the_processing_time_and_other_fields_are_kept() -> None:
    original = record(ts=NOW - 9000)
    enriched = enrich(spec("ts"), original, NOW, RULES)
    assert enriched == {**original, "event_time": NOW - 9000, "processed_at": NOW}


def test_enrich_does_not_modify_its_input() -> None:
    original = record(ts=NOW)
    enrich(spec("ts"), original, NOW, RULES)
    assert "event_time" not in original
    assert "processed_at" not in original


def test_event_further_in_the_future_than_the_allowed_skew_is_rejected() -> None:
    with pytest.raises(EventRejected, match="in the future"):
        enrich(spec("ts"), record(ts=NOW + 60_001), NOW, RULES)


def test_event_exactly_at_the_allowed_skew_is_accepted() -> None:
    assert enrich(spec("ts"), record(ts=NOW + 60_000), NOW, RULES)["event_time"] == NOW + 60_000


def test_old_events_are_not_rejected() -> None:
    assert enrich(spec("ts"), record(ts=0), NOW, RULES)["event_time"] == 0


def test_dedup_key_and_source_position_name_their_parts() -> None:
    assert dedup_key("clicks", "e1") == "riverbed:dedup:clicks:e1"
    assert source_position("clean.clicks", 3, 42) == "clean.clicks/3/42"
