"""The registry's pure functions: schema fingerprints and logical-type stripping."""

from __future__ import annotations

import copy
import io
from typing import Any

import fastavro

from schemas.registry import fingerprint, strip_logical_types

TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}


def schema_with(field_type: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Event",
        "fields": [{"name": "v", "type": field_type, **extra}],
    }


def test_fingerprint_is_stable_for_the_same_schema() -> None:
    assert fingerprint(schema_with("long")) == fingerprint(schema_with("long"))


def test_fingerprint_does_not_depend_on_key_order() -> None:
    ordered = {"type": "record", "name": "E", "fields": [{"name": "a", "type": "int"}]}
    reordered = {"fields": [{"type": "int", "name": "a"}], "name": "E", "type": "record"}
    assert fingerprint(ordered) == fingerprint(reordered)


def test_fingerprint_distinguishes_a_changed_default() -> None:
    assert fingerprint(schema_with("int", default=1)) != fingerprint(schema_with("int", default=2))


def test_fingerprint_distinguishes_a_default_from_no_default() -> None:
    assert fingerprint(schema_with("int", default=1)) != fingerprint(schema_with("int"))


def test_fingerprint_distinguishes_a_logical_type_from_its_base_type() -> None:
    assert fingerprint(schema_with(TS_MILLIS)) != fingerprint(schema_with("long"))


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    digest = fingerprint(schema_with("long"))
    assert len(digest) == 64
    int(digest, 16)


def test_strip_logical_types_removes_every_logical_type_annotation() -> None:
    schema = {
        "type": "record",
        "name": "E",
        "fields": [
            {"name": "t", "type": TS_MILLIS},
            {"name": "n", "type": ["null", {"type": "string", "logicalType": "uuid"}]},
            {
                "name": "xs",
                "type": {"type": "array", "items": {"type": "int", "logicalType": "date"}},
            },
        ],
    }
    stripped = strip_logical_types(schema)
    assert stripped["fields"][0]["type"] == {"type": "long"}
    assert stripped["fields"][1]["type"] == ["null", {"type": "string"}]
    assert stripped["fields"][2]["type"] == {"type": "array", "items": {"type": "int"}}


def test_strip_logical_types_drops_decimal_precision_and_scale() -> None:
    decimal = {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}
    assert strip_logical_types(decimal) == {"type": "bytes"}


def test_strip_logical_types_leaves_the_input_unchanged() -> None:
    schema = schema_with(TS_MILLIS)
    before = copy.deepcopy(schema)
    strip_logical_types(schema)
    assert schema == before


def test_decoding_with_the_stripped_schema_gives_epoch_integers_for_timestamps() -> None:
    schema = schema_with(TS_MILLIS)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), {"v": 1_700_000_000_123})
    buffer.seek(0)
    raw = fastavro.parse_schema(strip_logical_types(schema))
    decoded = fastavro.schemaless_reader(buffer, raw, None)
    assert isinstance(decoded, dict)
    assert decoded == {"v": 1_700_000_000_123}
    assert type(decoded["v"]) is int
