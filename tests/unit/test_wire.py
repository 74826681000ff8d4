"""The Confluent wire format: framing, round trips, and clear errors for foreign bytes."""

from __future__ import annotations

import struct
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import wire
from schemas.validation import validate_event

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Sample",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "total", "type": "long"},
        {"name": "ratio", "type": "double"},
        {"name": "flag", "type": "boolean"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
    ],
}
PARSED = fastavro.parse_schema(SCHEMA)

sample_events = st.fixed_dictionaries(
    {
        "id": st.text(),
        "count": st.integers(-(2**31), 2**31 - 1),
        "total": st.integers(-(2**63), 2**63 - 1),
        "ratio": st.floats(allow_nan=False, allow_infinity=False),
        "flag": st.booleans(),
        "note": st.none() | st.text(),
        "tags": st.lists(st.text(), max_size=5),
        "attrs": st.dictionaries(st.text(), st.integers(-(2**63), 2**63 - 1), max_size=5),
        "kind": st.sampled_from(["A", "B", "C"]),
    }
)


def sample(**overrides: Any) -> dict[str, Any]:
    event = {
        "id": "e1",
        "count": 1,
        "total": 2,
        "ratio": 0.5,
        "flag": True,
        "note": None,
        "tags": [],
        "attrs": {},
        "kind": "A",
    }
    return {**event, **overrides}


@given(event=sample_events, schema_id=st.integers(0, 2**32 - 1))
def test_any_valid_datum_round_trips_through_the_wire_format(
    event: dict[str, Any], schema_id: int
) -> None:
    datum, problems = validate_event(SCHEMA, event)
    assert problems == []
    assert datum is not None
    message = wire.encode(schema_id, PARSED, datum)
    decoded_id, body = wire.split(message)
    assert decoded_id == schema_id
    assert wire.decode_body(body, PARSED) == event


def test_encoded_message_starts_with_magic_byte_and_big_endian_schema_id() -> None:
    message = wire.encode(0x01020304, PARSED, sample())
    assert message[:5] == b"\x00\x01\x02\x03\x04"


def test_split_returns_the_body_after_the_five_byte_header() -> None:
    message = wire.encode(9, PARSED, sample())
    schema_id, body = wire.split(message)
    assert schema_id == 9
    assert bytes(body) == message[5:]


@pytest.mark.parametrize("length", [0, 1, 4])
def test_message_shorter_than_the_header_is_a_wire_format_error(length: int) -> None:
    with pytest.raises(wire.WireFormatError, match="shorter than the 5-byte header"):
        wire.split(b"\x00" * length)


def test_wrong_magic_byte_is_a_wire_format_error() -> None:
    with pytest.raises(wire.WireFormatError, match="magic byte is 1"):
        wire.split(struct.pack(">bI", 1, 7) + b"body")


def test_truncated_body_is_a_wire_format_error() -> None:
    _, body = wire.split(wire.encode(1, PARSED, sample(id="a" * 50)))
    with pytest.raises(wire.WireFormatError):
        wire.decode_body(bytes(body)[:10], PARSED)


def test_body_is_decoded_with_the_reader_schema_when_one_is_given() -> None:
    reader = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Sample",
            "fields": [
                {"name": "id", "type": "string"},
                {"name": "added", "type": "string", "default": "filled"},
            ],
        }
    )
    _, body = wire.split(wire.encode(1, PARSED, sample(id="x")))
    assert wire.decode_body(body, PARSED, reader) == {"id": "x", "added": "filled"}


def test_a_reader_that_cannot_resolve_the_writer_is_a_wire_format_error() -> None:
    writer = fastavro.parse_schema(
        {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
    )
    reader = fastavro.parse_schema(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "int"}],
        }
    )
    message = wire.encode(1, writer, {"a": "x"})
    _, body = wire.split(message)
    with pytest.raises(wire.WireFormatError, match="b"):
        wire.decode_body(body, writer, reader)
