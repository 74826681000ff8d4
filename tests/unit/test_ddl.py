"""Avro -> ClickHouse: column types, value converters, and the table DDL."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest

from riverbed.core.clickhouse import quote
from riverbed.core.errors import Invalid
from riverbed.core.topology import events_table
from schemas.catalog import StreamSpec
from sinks.ddl import (
    UnsupportedType,
    columns_for,
    create_events_table,
    create_metrics_table,
    row_converter,
)

TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
TS_MICROS = {"type": "long", "logicalType": "timestamp-micros"}
COLOR = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}
POINT = {
    "type": "record",
    "name": "Point",
    "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}],
}


def one_column(avro_type: Any) -> Any:
    schema = {"type": "record", "name": "Row", "fields": [{"name": "v", "type": avro_type}]}
    [column] = columns_for(schema)
    assert column.name == "v"
    return column


@pytest.mark.parametrize(
    ("avro_type", "clickhouse_type"),
    [
        ("string", "String"),
        ("int", "Int32"),
        ("long", "Int64"),
        ("float", "Float32"),
        ("double", "Float64"),
        ("boolean", "Bool"),
        ("bytes", "String"),
        ({"type": "string"}, "String"),
        (COLOR, "LowCardinality(String)"),
        ({"type": "fixed", "name": "Hash", "size": 16}, "String"),
        ({"type": "array", "items": "int"}, "Array(Int32)"),
        ({"type": "array", "items": ["null", "long"]}, "Array(Nullable(Int64))"),
        ({"type": "map", "values": "double"}, "Map(String, Float64)"),
        (["null", "string"], "Nullable(String)"),
        (["string", "null"], "Nullable(String)"),
        (["null", "long", "string"], "String"),
        (["long", "string"], "String"),
        (["null", {"type": "array", "items": "int"}], "Array(Int32)"),
        (["null", {"type": "map", "values": "int"}], "Map(String, Int32)"),
        (POINT, "String"),
        (["null", POINT], "Nullable(String)"),
        (TS_MILLIS, "DateTime64(3, 'UTC')"),
        (["null", TS_MILLIS], "Nullable(DateTime64(3, 'UTC'))"),
        (TS_MICROS, "DateTime64(6, 'UTC')"),
        ({"type": "int", "logicalType": "date"}, "Date32"),
        ({"type": "string", "logicalType": "uuid"}, "UUID"),
        (
            {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
            "Decimal(10, 2)",
        ),
        ({"type": "bytes", "logicalType": "decimal", "precision": 5}, "Decimal(5, 0)"),
        (
            {
                "type": "fixed",
                "name": "D",
                "size": 8,
                "logicalType": "decimal",
                "precision": 18,
                "scale": 4,
            },
            "Decimal(18, 4)",
        ),
    ],
)
def test_avro_type_maps_to_its_clickhouse_column_type(avro_type: Any, clickhouse_type: str) -> None:
    assert one_column(avro_type).type == clickhouse_type


def test_nullable_enum_maps_to_low_cardinality_of_nullable_string() -> None:
    # ClickHouse refuses Nullable(LowCardinality(String)): "Nested type LowCardinality(String)
    # cannot be inside Nullable type"; the nullable goes inside.
    assert one_column(["null", COLOR]).type == "LowCardinality(Nullable(String))"


def test_named_type_referenced_by_name_maps_like_its_definition() -> None:
    schema = {
        "type": "record",
        "name": "Row",
        "fields": [{"name": "a", "type": COLOR}, {"name": "b", "type": "Color"}],
    }
    assert [c.type for c in columns_for(schema)] == ["LowCardinality(String)"] * 2


def test_type_without_a_mapping_is_rejected_naming_the_field() -> None:
    with pytest.raises(UnsupportedType, match="v"):
        one_column("null")


def test_columns_keep_the_schema_field_order() -> None:
    schema = {
        "type": "record",
        "name": "Row",
        "fields": [{"name": n, "type": "int"} for n in ("c", "a", "b")],
    }
    assert [c.name for c in columns_for(schema)] == ["c", "a", "b"]


# --- converters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (1_700_000_000_123, "2023-11-14 22:13:20.123"),
        (0, "1970-01-01 00:00:00.000"),
        (5, "1970-01-01 00:00:00.005"),
        (1000, "1970-01-01 00:00:01.000"),
        (-1, "1969-12-31 23:59:59.999"),
        (-1500, "1969-12-31 23:59:58.500"),
        (-86_400_000, "1969-12-31 00:00:00.000"),
    ],
)
def test_timestamp_millis_become_exact_utc_calendar_text(millis: int, text: str) -> None:
    assert one_column(TS_MILLIS).convert(millis) == text


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (1_700_000_000_123_456, "2023-11-14 22:13:20.123456"),
        (-1, "1969-12-31 23:59:59.999999"),
        (-2_500_000, "1969-12-31 23:59:57.500000"),
    ],
)
def test_timestamp_micros_become_exact_utc_calendar_text(micros: int, text: str) -> None:
    assert one_column(TS_MICROS).convert(micros) == text


@pytest.mark.parametrize(
    ("unscaled", "text"), [(12345, "123.45"), (-12345, "-123.45"), (7, "0.07"), (0, "0.00")]
)
def test_decimal_bytes_become_decimal_text(unscaled: int, text: str) -> None:
    column = one_column({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2})
    assert column.convert(unscaled.to_bytes(4, "big", signed=True)) == text


def test_decimal_of_high_precision_converts_without_losing_digits() -> None:
    column = one_column({"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 2})
    unscaled = 12345678901234567890123456789012
    text = column.convert(unscaled.to_bytes(16, "big", signed=True))
    assert Decimal(text) == Decimal("123456789012345678901234567890.12")


def test_bytes_and_fixed_become_base64_text() -> None:
    raw = b"\x00\xffhash"
    expected = base64.b64encode(raw).decode()
    assert one_column("bytes").convert(raw) == expected
    assert one_column({"type": "fixed", "name": "H", "size": 6}).convert(raw) == expected


def test_nullable_converter_passes_null_through_and_converts_values() -> None:
    column = one_column(["null", TS_MILLIS])
    assert column.convert(None) is None
    assert column.convert(1500) == "1970-01-01 00:00:01.500"


def test_multi_type_union_value_becomes_json_text() -> None:
    column = one_column(["null", "long", "string"])
    assert column.convert("abc") == '"abc"'
    assert column.convert(5) == "5"
    assert column.convert(None) is None


def test_nested_record_becomes_json_text() -> None:
    assert json.loads(one_column(POINT).convert({"x": 1, "y": 2})) == {"x": 1, "y": 2}


def test_array_and_map_convert_each_element() -> None:
    assert one_column({"type": "array", "items": TS_MILLIS}).convert([1000, -1]) == [
        "1970-01-01 00:00:01.000",
        "1969-12-31 23:59:59.999",
    ]
    assert one_column({"type": "map", "values": "bytes"}).convert({"k": b"\x01"}) == {"k": "AQ=="}


def test_plain_values_pass_through_unchanged() -> None:
    for avro_type, value in [("string", "s"), ("long", 3), ("double", 1.5), ("boolean", True)]:
        assert one_column(avro_type).convert(value) == value


def test_row_converter_converts_every_column_and_fills_missing_ones_with_null() -> None:
    schema = {
        "type": "record",
        "name": "Row",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "at", "type": TS_MILLIS},
            {"name": "note", "type": ["null", "string"]},
        ],
    }
    convert = row_converter(schema)
    assert convert({"id": "a", "at": 2500}) == {
        "id": "a",
        "at": "1970-01-01 00:00:02.500",
        "note": None,
    }


# --- DDL ------------------------------------------------------------------------------------


def clean_schema() -> dict[str, Any]:
    spec = StreamSpec(
        name="clicks",
        schema={
            "type": "record",
            "name": "Click",
            "fields": [{"name": "user_id", "type": "string"}, {"name": "n", "type": "int"}],
        },
        key_field="user_id",
    )
    return spec.clean_schema


def test_events_table_ddl_is_a_replacing_merge_tree_ordered_by_time_and_id() -> None:
    ddl = create_events_table("riverbed", "clicks", clean_schema())
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS `riverbed`.`events_clicks` (")
    assert "ENGINE = ReplacingMergeTree" in ddl
    assert ddl.rstrip().endswith("ORDER BY (event_time, event_id)")


def test_events_table_ddl_declares_every_column_with_its_type() -> None:
    ddl = create_events_table("riverbed", "clicks", clean_schema())
    for column in (
        "`user_id` String",
        "`n` Int32",
        "`event_id` String",
        "`ingested_at` DateTime64(3, 'UTC')",
        "`event_time` DateTime64(3, 'UTC')",
        "`processed_at` DateTime64(3, 'UTC')",
    ):
        assert column in ddl


def test_events_table_ddl_rejects_a_bad_database_name() -> None:
    with pytest.raises(Invalid, match="identifier"):
        create_events_table("db; DROP", "clicks", clean_schema())


def test_metrics_table_keeps_the_highest_version() -> None:
    ddl = create_metrics_table("riverbed")
    assert "ENGINE = ReplacingMergeTree(version)" in ddl
    assert "`riverbed`.`metrics`" in ddl


def test_events_table_name_is_prefixed() -> None:
    assert events_table("clicks") == "events_clicks"


@pytest.mark.parametrize("name", ["event_id", "_x", "A1"])
def test_quote_backticks_valid_identifiers(name: str) -> None:
    assert quote(name) == f"`{name}`"


@pytest.mark.parametrize("name", ["", "1a", "a-b", "a`b", "a b", "x;DROP", "é"])
def test_quote_rejects_identifiers_that_are_not_plain_names(name: str) -> None:
    with pytest.raises(Invalid, match="not a valid ClickHouse identifier"):
        quote(name)
