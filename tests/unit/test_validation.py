"""validate_event: JSON events checked against Avro schemas, every problem at its JSON Pointer."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riverbed.core.errors import FieldProblem
from schemas.validation import MAX_PROBLEMS, validate_event


def record(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "Event", "fields": list(fields)}


def one_field(avro_type: Any) -> dict[str, Any]:
    return record({"name": "v", "type": avro_type})


def accepted(schema: dict[str, Any], event: Any) -> Any:
    datum, problems = validate_event(schema, event)
    assert problems == [], problems
    return datum


def rejected(schema: dict[str, Any], event: Any) -> FieldProblem:
    """The one problem of an event with exactly one."""
    datum, problems = validate_event(schema, event)
    assert datum is None
    assert len(problems) == 1, problems
    return problems[0]


# --- primitives -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-(2**31), 0, 2**31 - 1])
def test_int_accepts_values_within_32_bit_range(value: int) -> None:
    assert accepted(one_field("int"), {"v": value}) == {"v": value}


@pytest.mark.parametrize("value", [-(2**31) - 1, 2**31])
def test_int_outside_32_bit_range_is_rejected(value: int) -> None:
    error = rejected(one_field("int"), {"v": value})
    assert error.path == "/v"
    assert "out of range" in error.message


@pytest.mark.parametrize("value", [-(2**63), 2**63 - 1])
def test_long_accepts_values_at_its_64_bit_bounds(value: int) -> None:
    assert accepted(one_field("long"), {"v": value}) == {"v": value}


@pytest.mark.parametrize("value", [-(2**63) - 1, 2**63])
def test_long_outside_64_bit_range_is_rejected(value: int) -> None:
    assert rejected(one_field("long"), {"v": value}).path == "/v"


@pytest.mark.parametrize("kind", ["int", "long"])
def test_boolean_is_not_accepted_as_an_integer(kind: str) -> None:
    error = rejected(one_field(kind), {"v": True})
    assert error.path == "/v"
    assert "boolean" in error.message


@pytest.mark.parametrize("kind", ["int", "long"])
def test_fractional_number_is_not_accepted_as_an_integer(kind: str) -> None:
    assert rejected(one_field(kind), {"v": 1.5}).path == "/v"


@pytest.mark.parametrize("kind", ["int", "long"])
def test_string_is_not_accepted_as_an_integer(kind: str) -> None:
    assert "string" in rejected(one_field(kind), {"v": "12"}).message


@pytest.mark.parametrize("kind", ["float", "double"])
def test_float_field_accepts_an_integer_and_returns_a_float(kind: str) -> None:
    datum = accepted(one_field(kind), {"v": 3})
    assert datum == {"v": 3.0}
    assert isinstance(datum["v"], float)


@pytest.mark.parametrize("kind", ["float", "double"])
def test_boolean_is_not_accepted_as_a_number(kind: str) -> None:
    assert rejected(one_field(kind), {"v": False}).path == "/v"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_number_is_rejected(value: float) -> None:
    assert "finite" in rejected(one_field("double"), {"v": value}).message


def test_boolean_field_rejects_an_integer() -> None:
    assert rejected(one_field("boolean"), {"v": 1}).path == "/v"


def test_boolean_field_accepts_true_and_false() -> None:
    assert accepted(one_field("boolean"), {"v": False}) == {"v": False}


def test_string_field_rejects_a_number_naming_both_types() -> None:
    error = rejected(one_field("string"), {"v": 5})
    assert error.message == "expected string, got integer"


def test_null_field_rejects_a_value() -> None:
    assert rejected(one_field("null"), {"v": 0}).path == "/v"


def test_schema_given_as_type_object_behaves_like_the_type_name() -> None:
    assert rejected(one_field({"type": "int"}), {"v": 2**31}).path == "/v"
    assert accepted(one_field({"type": "int"}), {"v": 7}) == {"v": 7}


# --- records --------------------------------------------------------------------------------


def test_missing_required_field_is_reported_with_its_path() -> None:
    schema = record({"name": "a", "type": "string"}, {"name": "b", "type": "int"})
    error = rejected(schema, {"a": "x"})
    assert error == FieldProblem("/b", "required field is missing")


def test_every_problem_of_an_event_is_reported_at_its_own_pointer() -> None:
    schema = record(
        {"name": "a", "type": "int"},
        {"name": "b", "type": "string"},
        {"name": "items", "type": {"type": "array", "items": "int"}},
    )
    datum, problems = validate_event(schema, {"a": "x", "items": [1, "two", 3, "four"], "c": 1})
    assert datum is None
    assert [p.path for p in problems] == ["/c", "/a", "/b", "/items/1", "/items/3"]


def test_a_field_name_with_a_slash_or_tilde_is_escaped_in_its_pointer() -> None:
    schema = record({"name": "a", "type": {"type": "map", "values": "int"}})
    error = rejected(schema, {"a": {"x/y~z": "not an int"}})
    assert error.path == "/a/x~1y~0z"


def test_an_event_with_many_bad_fields_gets_a_bounded_list_that_counts_the_rest() -> None:
    schema = one_field({"type": "array", "items": "int"})
    datum, problems = validate_event(schema, {"v": ["x"] * 500})
    assert datum is None
    assert len(problems) == MAX_PROBLEMS
    assert problems[-1].message == f"and {500 - MAX_PROBLEMS + 1} more problems"


def test_a_union_branch_that_fails_deep_inside_is_not_taken_half_way() -> None:
    inner = record({"name": "x", "type": "int"}, {"name": "y", "type": "int"})
    inner["name"] = "Inner"
    schema = one_field(["null", inner, "string"])
    assert accepted(schema, {"v": "text"}) == {"v": "text"}
    error = rejected(schema, {"v": {"x": 1, "y": "no"}})
    assert error.path == "/v" and "matches none" in error.message


def test_unknown_field_is_rejected_with_its_path() -> None:
    schema = record({"name": "amount", "type": "int"})
    error = rejected(schema, {"amount": 1, "amuont": 2})
    assert error.path == "/amuont"
    assert "amount" in error.message


def test_missing_field_with_default_is_filled_with_the_default() -> None:
    schema = record(
        {"name": "a", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "qty", "type": "int", "default": 1},
    )
    assert accepted(schema, {"a": "x"}) == {"a": "x", "note": None, "qty": 1}


def test_present_field_overrides_its_default() -> None:
    schema = record({"name": "qty", "type": "int", "default": 1})
    assert accepted(schema, {"qty": 5}) == {"qty": 5}


def test_non_object_event_is_rejected_at_the_root() -> None:
    error = rejected(record({"name": "a", "type": "int"}), [1, 2])
    assert error.path == ""
    assert "array" in error.message


def test_error_in_nested_record_has_the_nested_path() -> None:
    schema = record(
        {
            "name": "customer",
            "type": {
                "type": "record",
                "name": "Customer",
                "fields": [{"name": "age", "type": "int"}],
            },
        }
    )
    assert rejected(schema, {"customer": {"age": "old"}}).path == "/customer/age"


def test_named_record_type_can_be_referenced_by_name_later() -> None:
    address = {
        "type": "record",
        "name": "Address",
        "namespace": "shop",
        "fields": [{"name": "city", "type": "string"}],
    }
    schema = record({"name": "billing", "type": address}, {"name": "shipping", "type": "Address"})
    event = {"billing": {"city": "Oslo"}, "shipping": {"city": "Bergen"}}
    assert accepted(schema, event) == event
    assert rejected(schema, {"billing": {"city": "Oslo"}, "shipping": {}}).path == (
        "/shipping/city"
    )


def test_named_type_can_be_referenced_by_its_full_name() -> None:
    color = {"type": "enum", "name": "Color", "namespace": "shop", "symbols": ["RED", "BLUE"]}
    schema = record({"name": "a", "type": color}, {"name": "b", "type": "shop.Color"})
    assert accepted(schema, {"a": "RED", "b": "BLUE"}) == {"a": "RED", "b": "BLUE"}
    assert rejected(schema, {"a": "RED", "b": "GREEN"}).path == "/b"


# --- enums, arrays, maps --------------------------------------------------------------------

COLOR = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}


def test_enum_accepts_one_of_its_symbols() -> None:
    assert accepted(one_field(COLOR), {"v": "GREEN"}) == {"v": "GREEN"}


def test_enum_rejects_an_unknown_symbol_listing_the_allowed_ones() -> None:
    error = rejected(one_field(COLOR), {"v": "BLUE"})
    assert error.path == "/v"
    assert "RED" in error.message
    assert "GREEN" in error.message


def test_array_element_error_has_its_index_in_the_path() -> None:
    schema = record({"name": "items", "type": {"type": "array", "items": "int"}})
    assert rejected(schema, {"items": [1, 2, "three"]}).path == "/items/2"


def test_array_of_records_error_points_into_the_element() -> None:
    line = {"type": "record", "name": "Line", "fields": [{"name": "qty", "type": "int"}]}
    schema = record({"name": "items", "type": {"type": "array", "items": line}})
    assert rejected(schema, {"items": [{"qty": 1}, {"qty": None}]}).path == "/items/1/qty"


def test_array_field_rejects_a_non_list() -> None:
    schema = record({"name": "items", "type": {"type": "array", "items": "int"}})
    assert "expected array" in rejected(schema, {"items": {"0": 1}}).message


def test_empty_array_is_accepted() -> None:
    schema = record({"name": "items", "type": {"type": "array", "items": "int"}})
    assert accepted(schema, {"items": []}) == {"items": []}


def test_map_values_are_checked_with_the_key_in_the_path() -> None:
    schema = record({"name": "tags", "type": {"type": "map", "values": "long"}})
    assert accepted(schema, {"tags": {"a": 1, "b": 2}}) == {"tags": {"a": 1, "b": 2}}
    assert rejected(schema, {"tags": {"a": 1, "b": "x"}}).path == "/tags/b"


def test_map_field_rejects_a_list() -> None:
    schema = record({"name": "tags", "type": {"type": "map", "values": "long"}})
    assert "map" in rejected(schema, {"tags": [1]}).message


# --- unions ---------------------------------------------------------------------------------


def test_nullable_union_accepts_null_and_the_other_branch() -> None:
    schema = one_field(["null", "string"])
    assert accepted(schema, {"v": None}) == {"v": None}
    assert accepted(schema, {"v": "x"}) == {"v": "x"}


def test_nullable_union_rejects_a_value_of_another_type_naming_the_branches() -> None:
    error = rejected(one_field(["null", "string"]), {"v": 3})
    assert error.path == "/v"
    assert "null" in error.message
    assert "string" in error.message


def test_union_without_null_rejects_null() -> None:
    assert rejected(one_field(["int", "string"]), {"v": None}).path == "/v"


def test_union_picks_the_first_branch_that_accepts_the_value() -> None:
    schema = one_field(["null", "long", "string"])
    assert accepted(schema, {"v": 5}) == {"v": 5}
    assert accepted(schema, {"v": "5"}) == {"v": "5"}


def test_union_with_a_record_branch_validates_the_record() -> None:
    point = {
        "type": "record",
        "name": "Point",
        "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}],
    }
    schema = one_field(["null", point])
    assert accepted(schema, {"v": {"x": 1, "y": 2}}) == {"v": {"x": 1, "y": 2}}
    assert rejected(schema, {"v": {"x": 1}}).path == "/v"


# --- logical types --------------------------------------------------------------------------

TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
TS_MICROS = {"type": "long", "logicalType": "timestamp-micros"}


def test_timestamp_millis_accepts_epoch_milliseconds_unchanged() -> None:
    assert accepted(one_field(TS_MILLIS), {"v": 1_700_000_000_123}) == {"v": 1_700_000_000_123}


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2023-11-14T22:13:20.123Z", 1_700_000_000_123),
        ("2023-11-14T22:13:20.123+00:00", 1_700_000_000_123),
        ("2023-11-14T23:13:20.123+01:00", 1_700_000_000_123),
        ("1969-12-31T23:59:59Z", -1000),
    ],
)
def test_timestamp_millis_accepts_iso_8601_strings(text: str, millis: int) -> None:
    assert accepted(one_field(TS_MILLIS), {"v": text}) == {"v": millis}


@given(
    moment=st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2299, 12, 31, 23, 59, 59),
        timezones=st.just(UTC),
    )
)
def test_any_iso_timestamp_becomes_floor_milliseconds_since_epoch(moment: datetime) -> None:
    expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert accepted(one_field(TS_MILLIS), {"v": moment.isoformat()}) == {"v": expected}
    text = moment.replace(tzinfo=None).isoformat() + "Z"
    assert accepted(one_field(TS_MILLIS), {"v": text}) == {"v": expected}


@pytest.mark.parametrize("text", ["1899-12-31T23:59:59.999Z", "2300-01-01T00:00:00Z"])
def test_timestamp_outside_what_clickhouse_stores_is_rejected(text: str) -> None:
    error = rejected(one_field(TS_MILLIS), {"v": text})
    assert error.path == "/v" and "1900-01-01..2299-12-31" in error.message


def test_timestamp_millis_treats_a_naive_iso_string_as_utc() -> None:
    naive = accepted(one_field(TS_MILLIS), {"v": "2023-11-14T22:13:20.123"})
    assert naive == {"v": 1_700_000_000_123}


def test_timestamp_micros_keeps_microsecond_precision_from_iso_strings() -> None:
    datum = accepted(one_field(TS_MICROS), {"v": "2023-11-14T22:13:20.123456Z"})
    assert datum == {"v": 1_700_000_000_123_456}


def test_timestamp_micros_accepts_epoch_microseconds_unchanged() -> None:
    assert accepted(one_field(TS_MICROS), {"v": 1_700_000_000_123_456}) == {
        "v": 1_700_000_000_123_456
    }


@pytest.mark.parametrize("value", ["yesterday", "2023-13-01T00:00:00Z", True, 1.5, None])
def test_timestamp_rejects_values_that_are_not_instants(value: Any) -> None:
    assert rejected(one_field(TS_MILLIS), {"v": value}).path == "/v"


def test_date_accepts_an_iso_date_as_days_since_epoch() -> None:
    schema = one_field({"type": "int", "logicalType": "date"})
    assert accepted(schema, {"v": "1970-01-11"}) == {"v": 10}
    assert accepted(schema, {"v": "1969-12-31"}) == {"v": -1}
    assert accepted(schema, {"v": 19_000}) == {"v": 19_000}


def test_date_rejects_a_malformed_iso_date() -> None:
    schema = one_field({"type": "int", "logicalType": "date"})
    assert "YYYY-MM-DD" in rejected(schema, {"v": "2024-02-30"}).message


def test_uuid_is_accepted_and_normalised_to_lower_case_with_dashes() -> None:
    value = uuid.uuid4()
    schema = one_field({"type": "string", "logicalType": "uuid"})
    assert accepted(schema, {"v": str(value).upper()}) == {"v": str(value)}


def test_uuid_rejects_text_that_is_not_a_uuid() -> None:
    schema = one_field({"type": "string", "logicalType": "uuid"})
    assert "UUID" in rejected(schema, {"v": "not-a-uuid"}).message


DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}


@pytest.mark.parametrize(("value", "expected"), [("12.34", "12.34"), (12.5, "12.5"), (7, "7")])
def test_decimal_accepts_numbers_and_strings_within_its_scale(value: Any, expected: str) -> None:
    assert accepted(one_field(DECIMAL), {"v": value}) == {"v": Decimal(expected)}


def test_decimal_with_more_places_than_its_scale_is_rejected() -> None:
    error = rejected(one_field(DECIMAL), {"v": "1.234"})
    assert error.path == "/v"
    assert "2 decimal places" in error.message


@pytest.mark.parametrize("value", ["abc", True, [1]])
def test_decimal_rejects_values_that_are_not_numbers(value: Any) -> None:
    assert rejected(one_field(DECIMAL), {"v": value}).path == "/v"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_decimal_rejects_non_finite_values_with_a_field_error(value: str) -> None:
    assert rejected(one_field(DECIMAL), {"v": value}).path == "/v"


def test_decimal_with_more_digits_than_its_precision_is_rejected() -> None:
    # precision 6, scale 2: at most 4 digits before the point; the Avro writer refuses more.
    assert rejected(one_field(DECIMAL), {"v": "12345.6"}).path == "/v"


def test_unknown_logical_type_falls_back_to_the_underlying_type() -> None:
    schema = one_field({"type": "string", "logicalType": "color-name"})
    assert accepted(schema, {"v": "teal"}) == {"v": "teal"}
    assert rejected(schema, {"v": 3}).path == "/v"


# --- bytes and fixed ------------------------------------------------------------------------


def test_bytes_are_read_from_base64() -> None:
    raw = bytes(range(256))
    assert accepted(one_field("bytes"), {"v": base64.b64encode(raw).decode()}) == {"v": raw}


@pytest.mark.parametrize("value", ["not base64!", "é", 12])
def test_bytes_reject_values_that_are_not_base64_text(value: Any) -> None:
    assert "base64" in rejected(one_field("bytes"), {"v": value}).message


def test_fixed_accepts_exactly_its_size() -> None:
    schema = one_field({"type": "fixed", "name": "Hash", "size": 4})
    assert accepted(schema, {"v": base64.b64encode(b"abcd").decode()}) == {"v": b"abcd"}


def test_fixed_of_the_wrong_size_is_rejected_with_both_sizes() -> None:
    schema = one_field({"type": "fixed", "name": "Hash", "size": 4})
    error = rejected(schema, {"v": base64.b64encode(b"abc").decode()})
    assert error == FieldProblem("/v", "expected 4 bytes, got 3")


def test_field_error_serialises_to_path_and_message() -> None:
    assert FieldProblem("/a", "bad").to_dict() == {"path": "/a", "message": "bad"}


def test_an_integer_too_large_for_a_double_is_a_field_error() -> None:
    error = rejected(one_field("double"), {"v": 10**400})
    assert error.path == "/v" and "401 digits" in error.message


def test_a_lone_surrogate_in_a_string_is_a_field_error() -> None:
    error = rejected(one_field("string"), {"v": "bad \ud800 text"})
    assert error.path == "/v" and "surrogate" in error.message
