"""Request bodies to validated batches: JSON, arrays, NDJSON, event ids, keys, rejections."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.ingest.batch import (
    MAX_EVENT_ID_LENGTH,
    BodyError,
    LateCheck,
    parse_events,
    prepare_batch,
)
from schemas.catalog import StreamSpec

JSON = "application/json"
NDJSON = "application/x-ndjson"
INGESTED_AT = 1_700_000_000_000

SPEC = StreamSpec(
    name="orders",
    schema={
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "order_id", "type": "string"},
            {"name": "shop", "type": "long"},
            {"name": "amount", "type": "double"},
        ],
    },
    key_field="shop",
)


def order(**values: Any) -> dict[str, Any]:
    return {"order_id": "o1", "shop": 7, "amount": 9.5, **values}


# --- parse_events ---------------------------------------------------------------------------


def test_single_json_object_is_one_event() -> None:
    assert parse_events(b'{"a": 1}', JSON) == [{"a": 1}]


def test_json_array_is_a_list_of_events() -> None:
    assert parse_events(b'[{"a": 1}, {"a": 2}]', JSON) == [{"a": 1}, {"a": 2}]


def test_ndjson_gives_one_event_per_line_and_skips_blank_lines() -> None:
    body = b'{"a": 1}\n\n  \n{"a": 2}\r\n{"a": 3}'
    assert parse_events(body, NDJSON) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_ndjson_is_recognised_with_content_type_parameters_and_jsonlines() -> None:
    assert parse_events(b'{"a": 1}\n{"a": 2}', "application/x-ndjson; charset=utf-8") == [
        {"a": 1},
        {"a": 2},
    ]
    assert parse_events(b'{"a": 1}\n{"a": 2}', "application/jsonlines") == [{"a": 1}, {"a": 2}]


def test_bad_json_reports_line_and_column() -> None:
    with pytest.raises(BodyError) as caught:
        parse_events(b'{\n  "a": 1,\n  "b": }', JSON)
    assert caught.value.where == {"line": 3, "column": 8}
    assert "not JSON" in str(caught.value)


def test_bad_ndjson_line_reports_its_line_number_and_column() -> None:
    with pytest.raises(BodyError) as caught:
        parse_events(b'{"a": 1}\n{"a": 2}\n{"a" 3}', NDJSON)
    assert caught.value.where == {"line": 3, "column": 6}
    assert "line 3" in str(caught.value)


def test_two_json_objects_without_ndjson_content_type_are_rejected() -> None:
    with pytest.raises(BodyError) as caught:
        parse_events(b'{"a": 1}\n{"a": 2}', JSON)
    assert caught.value.where["line"] == 2


@pytest.mark.parametrize("body", [b"", b"   \n\t"])
def test_empty_body_is_rejected(body: bytes) -> None:
    with pytest.raises(BodyError, match="empty"):
        parse_events(body, JSON)


def test_non_utf8_body_is_rejected_naming_the_byte_offset() -> None:
    with pytest.raises(BodyError, match="byte 6"):
        parse_events(b'{"a": \xff}', JSON)


def test_non_utf8_ndjson_body_is_rejected() -> None:
    with pytest.raises(BodyError, match="UTF-8"):
        parse_events(b"\xc3\x28", NDJSON)


def test_body_error_without_location_has_empty_where() -> None:
    assert BodyError("x").where == {}


# --- prepare_batch --------------------------------------------------------------------------


def test_valid_event_is_accepted_with_generated_event_id_key_and_ingest_time() -> None:
    batch = prepare_batch(SPEC, [order()], INGESTED_AT)
    assert batch.rejected == []
    [event] = batch.accepted
    assert event.index == 0
    assert len(event.event_id) == 32
    int(event.event_id, 16)
    assert event.key == b"7"
    assert event.datum == {**order(), "event_id": event.event_id, "ingested_at": INGESTED_AT}


def test_generated_event_ids_differ_between_events() -> None:
    batch = prepare_batch(SPEC, [order(), order()], INGESTED_AT)
    assert batch.accepted[0].event_id != batch.accepted[1].event_id


def test_client_event_id_is_kept() -> None:
    batch = prepare_batch(SPEC, [order(event_id="client-42")], INGESTED_AT)
    assert batch.accepted[0].event_id == "client-42"
    assert batch.accepted[0].datum["event_id"] == "client-42"


def test_null_event_id_gets_a_generated_one() -> None:
    batch = prepare_batch(SPEC, [order(event_id=None)], INGESTED_AT)
    assert batch.accepted[0].event_id


@pytest.mark.parametrize("event_id", ["", 42, ["a"], "x" * (MAX_EVENT_ID_LENGTH + 1)])
def test_invalid_event_id_is_rejected_with_its_path(event_id: Any) -> None:
    batch = prepare_batch(SPEC, [order(event_id=event_id)], INGESTED_AT)
    assert batch.accepted == []
    [rejected] = batch.rejected
    assert [p.path for p in rejected.problems] == ["/event_id"]
    assert rejected.event_id is None


def test_event_id_of_maximum_length_is_kept() -> None:
    event_id = "x" * MAX_EVENT_ID_LENGTH
    assert prepare_batch(SPEC, [order(event_id=event_id)], INGESTED_AT).accepted[0].event_id == (
        event_id
    )


@pytest.mark.parametrize("event", [[1, 2], "text", 3, None])
def test_non_object_event_is_rejected_with_its_index(event: Any) -> None:
    batch = prepare_batch(SPEC, [order(), event], INGESTED_AT)
    assert [a.index for a in batch.accepted] == [0]
    [rejected] = batch.rejected
    assert rejected.index == 1
    [problem] = rejected.problems
    assert problem.path == ""
    assert "JSON object" in problem.message
    assert json.loads(rejected.original) == event


def test_batch_with_one_invalid_event_reports_its_index_and_keeps_the_others() -> None:
    events = [order(order_id="a"), order(amount="lots"), order(order_id="c")]
    batch = prepare_batch(SPEC, events, INGESTED_AT)
    assert [a.index for a in batch.accepted] == [0, 2]
    [rejected] = batch.rejected
    [entry] = rejected.to_dicts()
    assert entry["index"] == 1
    assert entry["path"] == "/amount"


def test_rejected_event_keeps_its_client_event_id_and_original_bytes() -> None:
    event = order(shop="seven", event_id="client-1")
    [rejected] = prepare_batch(SPEC, [event], INGESTED_AT).rejected
    assert rejected.event_id == "client-1"
    assert json.loads(rejected.original) == event
    assert rejected.to_dicts() == [
        {
            "index": 0,
            "event_id": "client-1",
            "path": "/shop",
            "message": rejected.problems[0].message,
        }
    ]


def test_a_bad_event_id_and_a_bad_field_are_both_reported() -> None:
    [rejected] = prepare_batch(SPEC, [order(event_id=42, amount="lots")], INGESTED_AT).rejected
    assert [p.path for p in rejected.problems] == ["/event_id", "/amount"]
    assert rejected.summary().startswith("/event_id: ")


def test_prepare_batch_does_not_modify_the_callers_events() -> None:
    event = order(event_id="client-1")
    prepare_batch(SPEC, [event], INGESTED_AT)
    assert event == order(event_id="client-1")


def test_key_is_the_text_of_the_key_field() -> None:
    spec = StreamSpec(name="orders", schema=SPEC.schema, key_field="order_id")
    assert prepare_batch(spec, [order(order_id="ü-1")], INGESTED_AT).accepted[0].key == (
        "ü-1".encode()
    )


TIMED = StreamSpec(
    name="clicks",
    schema={
        "type": "record",
        "name": "Click",
        "fields": [
            {"name": "user", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    },
    key_field="user",
    time_field="ts",
)


def test_an_event_too_far_in_the_future_is_rejected_before_the_202() -> None:
    now = 1_800_000_000_000
    events = [{"user": "u", "ts": now + 60_000}, {"user": "u", "ts": now + 600_000}]
    batch = prepare_batch(TIMED, events, now, max_future_ms=300_000)
    assert [a.index for a in batch.accepted] == [0]
    [rejected] = batch.rejected
    assert (rejected.index, rejected.problems[0].path) == (1, "/ts")
    assert "600 s in the future" in rejected.problems[0].message


def test_an_event_whose_metrics_window_closed_is_stored_but_quarantined() -> None:
    now = 1_800_000_000_000  # a minute boundary: windows [now - 60 s, now) closed at now + 10 s
    late = LateCheck(window_ms=60_000, lateness_ms=10_000)
    events = [
        {"user": "u", "ts": now - 1_000},  # its window closes in 10 s: counted
        {"user": "u", "ts": now - 61_000},  # its window closed 50 s ago
    ]
    batch = prepare_batch(TIMED, events, now, late=late)
    assert [(a.index, a.quarantine is None) for a in batch.accepted] == [(0, True), (1, False)]
    assert "closed 50 s ago" in (batch.accepted[1].quarantine or "")
    untimed = prepare_batch(SPEC, [order()], now, late=late)
    assert untimed.accepted[0].quarantine is None  # event time is the ingest time: never late


def test_a_second_copy_of_an_event_id_in_one_request_is_a_duplicate_not_produced() -> None:
    events = [order(event_id="a"), order(event_id="b"), order(event_id="a", amount=1.0)]
    batch = prepare_batch(SPEC, events, INGESTED_AT)
    assert [a.event_id for a in batch.accepted] == ["a", "b"]
    [duplicate] = batch.duplicates
    assert duplicate.to_dict() == {"index": 2, "event_id": "a", "first_index": 0}


def test_ndjson_sent_as_json_says_which_content_type_to_use() -> None:
    body = b'{"order_id": "a"}\n{"order_id": "b"}\n'
    with pytest.raises(BodyError, match="application/x-ndjson"):
        parse_events(body, "application/json")
