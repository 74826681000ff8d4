"""The stream catalog: loading streams.toml, rejecting flawed declarations, derived schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.catalog import (
    RESERVED_FIELDS,
    CatalogError,
    StreamSpec,
    load_catalog,
)

TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}


def clicks_schema(*extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Click",
        "fields": [
            {"name": "user_id", "type": "string"},
            {"name": "button", "type": "string"},
            {"name": "ts", "type": TS_MILLIS},
            *extra,
        ],
    }


def write_catalog(
    directory: Path, toml: str, schemas: dict[str, dict[str, Any]] | None = None
) -> Path:
    (directory / "streams.toml").write_text(toml)
    if schemas is None:
        schemas = {"clicks": clicks_schema()}
    for name, schema in schemas.items():
        (directory / f"{name}.avsc").write_text(json.dumps(schema))
    return directory


def test_bundled_catalog_declares_pageviews_and_purchases() -> None:
    catalog = load_catalog()
    assert set(catalog) == {"pageviews", "purchases"}
    assert catalog["pageviews"].key_field == "user_id"
    assert catalog["pageviews"].time_field == "ts"
    assert catalog["purchases"].group_by == "product"


def test_minimal_catalog_loads_with_optional_settings_unset(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path, '[streams.clicks]\nkey = "user_id"\n'))
    spec = catalog["clicks"]
    assert spec.key_field == "user_id"
    assert (spec.time_field, spec.group_by, spec.window_seconds) == (None, None, None)
    assert spec.field_names == ("user_id", "button", "ts")


def test_catalog_settings_are_read_from_the_stream_table(tmp_path: Path) -> None:
    toml = (
        '[streams.clicks]\nkey = "user_id"\ntime_field = "ts"\n'
        'group_by = "button"\nwindow_seconds = 30\n'
    )
    spec = load_catalog(write_catalog(tmp_path, toml))["clicks"]
    assert (spec.time_field, spec.group_by, spec.window_seconds) == ("ts", "button", 30)


def test_schema_file_can_be_named_explicitly(tmp_path: Path) -> None:
    toml = '[streams.clicks]\nkey = "user_id"\nschema = "click_v2.avsc"\n'
    catalog = load_catalog(write_catalog(tmp_path, toml, {"click_v2": clicks_schema()}))
    assert catalog["clicks"].schema["name"] == "Click"


def test_missing_key_is_an_error_naming_the_catalog_file(tmp_path: Path) -> None:
    write_catalog(tmp_path, '[streams.clicks]\ntime_field = "ts"\n')
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert str(tmp_path / "streams.toml") in str(caught.value)
    assert [p.to_dict() for p in caught.value.problems] == [
        {"path": "/streams/clicks/key", "message": "'key' is required"}
    ]


def test_every_unknown_or_mistyped_setting_is_reported_at_once(tmp_path: Path) -> None:
    toml = '[streams.clicks]\nkey = "user_id"\ngroup-by = "button"\nwindow_seconds = -5\n'
    write_catalog(tmp_path, toml)
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert {(p.path, p.message.split(";")[0]) for p in caught.value.problems} >= {
        ("/streams/clicks/group-by", "unknown setting 'group-by'"),
    }
    assert "/streams/clicks/window_seconds" in {p.path for p in caught.value.problems}


def test_key_field_missing_from_the_schema_is_rejected(tmp_path: Path) -> None:
    write_catalog(tmp_path, '[streams.clicks]\nkey = "account_id"\n')
    with pytest.raises(CatalogError, match="key field 'account_id' is not a field"):
        load_catalog(tmp_path)


def test_group_by_missing_from_the_schema_is_rejected(tmp_path: Path) -> None:
    write_catalog(tmp_path, '[streams.clicks]\nkey = "user_id"\ngroup_by = "colour"\n')
    with pytest.raises(CatalogError, match="group_by 'colour'"):
        load_catalog(tmp_path)


@pytest.mark.parametrize("reserved", ["event_id", "ingested_at", "event_time", "processed_at"])
def test_reserved_system_field_names_are_rejected(tmp_path: Path, reserved: str) -> None:
    schema = clicks_schema({"name": reserved, "type": "string"})
    write_catalog(tmp_path, '[streams.clicks]\nkey = "user_id"\n', {"clicks": schema})
    with pytest.raises(CatalogError, match="reserved") as caught:
        load_catalog(tmp_path)
    assert reserved in str(caught.value)


def test_reserved_names_are_the_four_system_fields() -> None:
    assert {"event_id", "ingested_at", "event_time", "processed_at"} == RESERVED_FIELDS


@pytest.mark.parametrize(
    "time_type",
    ["long", "string", {"type": "long", "logicalType": "timestamp-micros"}],
)
def test_time_field_that_is_not_timestamp_millis_is_rejected(
    tmp_path: Path, time_type: Any
) -> None:
    schema = clicks_schema({"name": "at", "type": time_type})
    write_catalog(
        tmp_path, '[streams.clicks]\nkey = "user_id"\ntime_field = "at"\n', {"clicks": schema}
    )
    with pytest.raises(CatalogError, match="must be timestamp-millis"):
        load_catalog(tmp_path)


def test_nullable_timestamp_millis_is_accepted_as_time_field(tmp_path: Path) -> None:
    schema = clicks_schema({"name": "at", "type": ["null", TS_MILLIS], "default": None})
    write_catalog(
        tmp_path, '[streams.clicks]\nkey = "user_id"\ntime_field = "at"\n', {"clicks": schema}
    )
    assert load_catalog(tmp_path)["clicks"].time_field == "at"


@pytest.mark.parametrize("name", ["Clicks", "1clicks", "click-stream", "a" * 64])
def test_bad_stream_name_is_rejected(tmp_path: Path, name: str) -> None:
    write_catalog(tmp_path, f'[streams."{name}"]\nkey = "user_id"\n', {name: clicks_schema()})
    with pytest.raises(CatalogError, match="stream names are lower-case"):
        load_catalog(tmp_path)


def test_missing_schema_file_is_an_error_naming_that_file(tmp_path: Path) -> None:
    write_catalog(tmp_path, '[streams.clicks]\nkey = "user_id"\n', {})
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert str(tmp_path / "clicks.avsc") in str(caught.value)


def test_schema_file_that_is_not_json_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "streams.toml").write_text('[streams.clicks]\nkey = "user_id"\n')
    (tmp_path / "clicks.avsc").write_text("{not json")
    with pytest.raises(CatalogError, match=r"clicks\.avsc"):
        load_catalog(tmp_path)


def test_invalid_toml_is_an_error_naming_the_catalog_file(tmp_path: Path) -> None:
    (tmp_path / "streams.toml").write_text("[streams.clicks\n")
    with pytest.raises(CatalogError, match=r"streams\.toml"):
        load_catalog(tmp_path)


def test_missing_catalog_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"streams\.toml"):
        load_catalog(tmp_path)


def test_schema_that_is_not_a_record_is_rejected(tmp_path: Path) -> None:
    enum = {"type": "enum", "name": "E", "symbols": ["A"]}
    write_catalog(tmp_path, '[streams.clicks]\nkey = "user_id"\n', {"clicks": enum})
    with pytest.raises(CatalogError, match="must be an Avro record"):
        load_catalog(tmp_path)


# --- derived schemas ------------------------------------------------------------------------


def spec(**overrides: Any) -> StreamSpec:
    options: dict[str, Any] = {
        "name": "clicks",
        "schema": clicks_schema(
            {"name": "score", "type": "double"},
            {"name": "retries", "type": ["null", "int"], "default": None},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        ),
        "key_field": "user_id",
        "time_field": "ts",
    }
    return StreamSpec(**{**options, **overrides})


def field_names(schema: dict[str, Any]) -> list[str]:
    return [f["name"] for f in schema["fields"]]


def test_ingest_schema_appends_event_id_and_ingested_at() -> None:
    ingest = spec().ingest_schema
    assert field_names(ingest)[-2:] == ["event_id", "ingested_at"]
    assert ingest["name"] == "ClickEvent"
    assert ingest["fields"][-1]["type"] == TS_MILLIS


def test_clean_schema_appends_event_time_and_processed_at_after_ingest_fields() -> None:
    clean = spec().clean_schema
    assert field_names(clean)[-4:] == ["event_id", "ingested_at", "event_time", "processed_at"]
    assert clean["name"] == "ClickEventClean"
    assert field_names(clean)[:3] == ["user_id", "button", "ts"]


def test_derived_schemas_do_not_modify_the_user_schema() -> None:
    stream = spec()
    before = field_names(stream.schema)
    stream.clean_schema["fields"].append({"name": "x", "type": "int"})
    assert field_names(stream.schema) == before
    assert "x" not in field_names(stream.clean_schema)


def test_numeric_fields_exclude_the_time_field_and_logical_types() -> None:
    assert spec().numeric_fields == ["score", "retries"]


def test_numeric_fields_exclude_a_plain_long_time_field_by_name() -> None:
    stream = spec(
        schema=clicks_schema({"name": "seen", "type": "long"}, {"name": "n", "type": "int"}),
        time_field="seen",
    )
    assert stream.numeric_fields == ["n"]


def test_bundled_streams_aggregate_their_measures_but_not_their_time_field() -> None:
    catalog = load_catalog()
    assert catalog["pageviews"].numeric_fields == ["load_ms"]
    assert catalog["purchases"].numeric_fields == ["quantity", "price"]


def test_public_view_lists_the_stream_topics() -> None:
    assert spec().to_public()["topics"] == {
        "events": "events.clicks",
        "clean": "clean.clicks",
        "dlq": "dlq.clicks",
    }


def test_every_flaw_of_a_declaration_is_reported_at_its_pointer(tmp_path: Path) -> None:
    schema = clicks_schema(
        {"name": "bad-name", "type": "string"}, {"name": "event_id", "type": "string"}
    )
    toml = '[streams.clicks]\nkey = "account_id"\ngroup_by = "colour"\ntime_field = "button"\n'
    write_catalog(tmp_path, toml, {"clicks": schema})
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert [p.path for p in caught.value.problems] == [
        "/schema/fields/3/name",
        "/schema/fields/4/name",
    ]
    schema = clicks_schema()
    write_catalog(tmp_path, toml, {"clicks": schema})
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert [p.path for p in caught.value.problems] == ["/key_field", "/group_by", "/time_field"]
    assert "3 problems" in str(caught.value)
