"""Reference tables and enrichment: declarations, the derived clean schema, the join itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema

from schemas import wire
from schemas.catalog import CatalogError, load_catalog, load_reference_tables
from schemas.compatibility import check
from schemas.reference import (
    Enrichment,
    InvalidAttributes,
    ReferenceTable,
    coerce,
    lookup_key,
)
from schemas.routes import Route
from schemas.stream_catalog import spec_from_json, spec_to_json
from streams.processing import add_reference_attributes, no_references
from tests.unit.test_catalog import clicks_schema, write_catalog

PRODUCTS = ReferenceTable(
    "products", (("category", "string"), ("in_stock", "boolean"), ("unit_cost", "double"))
)

CATALOG = """
[streams.clicks]
key = "user_id"

[streams.clicks.enrich]
table = "buttons"
key = "button"
fields = ["label", "weight"]

[reference.buttons]
fields = { label = "string", weight = "int", colour = "string" }
"""


def load(tmp_path: Path, toml: str = CATALOG, *extra: dict[str, Any]) -> Any:
    return load_catalog(write_catalog(tmp_path, toml, {"clicks": clicks_schema(*extra)}))


def test_enriched_fields_are_appended_to_the_clean_schema_as_nullable_with_default_null(
    tmp_path: Path,
) -> None:
    spec = load(tmp_path)["clicks"]
    added = spec.clean_schema["fields"][-2:]
    assert [(f["name"], f["type"], f["default"]) for f in added] == [
        ("label", ["null", "string"], None),
        ("weight", ["null", "int"], None),
    ]
    assert spec.to_public()["enrich"] == [
        {"table": "buttons", "key": "button", "fields": ["label", "weight"]}
    ]
    parse_schema(spec.clean_schema)  # a valid Avro schema


def test_adding_or_dropping_an_enrichment_is_backward_compatible(tmp_path: Path) -> None:
    enriched = load(tmp_path)["clicks"]
    plain = dataclasses.replace(enriched, enrich=())
    assert check("BACKWARD_TRANSITIVE", enriched.clean_schema, [plain.clean_schema]) == []
    assert check("BACKWARD_TRANSITIVE", plain.clean_schema, [enriched.clean_schema]) == []


def test_a_clean_record_without_an_entry_encodes_with_nulls(tmp_path: Path) -> None:
    spec = load(tmp_path)["clicks"]
    record = {
        "user_id": "u1",
        "button": "buy",
        "ts": 1,
        "event_id": "e1",
        "ingested_at": 1,
        "event_time": 1,
        "processed_at": 2,
    }
    add_reference_attributes(spec, record, no_references)
    assert (record["label"], record["weight"]) == (None, None)
    parsed = parse_schema(spec.clean_schema)
    _, body = wire.split(wire.encode(1, parsed, record))
    decoded = wire.decode_body(body, parsed)
    assert (decoded["event_id"], decoded["label"], decoded["weight"]) == ("e1", None, None)


def test_a_spec_with_routes_and_enrichment_survives_the_live_catalog_json(tmp_path: Path) -> None:
    spec = dataclasses.replace(load(tmp_path)["clicks"], routes=(Route("weight > 1", "heavy"),))
    assert spec_from_json(spec_to_json(spec)) == spec
    plain = dataclasses.replace(spec, routes=(), enrich=())
    assert spec_from_json(spec_to_json(plain)) == plain


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (CATALOG.replace('table = "buttons"', 'table = "labels"'), "no reference table 'labels'"),
        (CATALOG.replace('key = "button"', 'key = "colour"'), "key 'colour' is not a field"),
        (CATALOG.replace('key = "button"', 'key = "score"'), "key field 'score' must be one of"),
        (CATALOG.replace('"label", "weight"', '"label", "size"'), r"\['size'\] are not fields"),
        (
            CATALOG.replace('colour = "string"', 'button = "string"').replace(
                '"label", "weight"', '"label", "button"'
            ),
            "enriched field 'button' would collide",
        ),
        (CATALOG.replace('weight = "int"', 'weight = "decimal"'), "supported:"),
        (CATALOG.replace("fields = [", "field = ["), "'fields' is required"),
        (CATALOG.replace("[reference.buttons]", "[reference.Buttons]"), "lower-case"),
    ],
)
def test_a_catalog_with_a_bad_enrichment_does_not_load(
    tmp_path: Path, toml: str, message: str
) -> None:
    with pytest.raises(CatalogError, match=message):
        load(tmp_path, toml, {"name": "score", "type": "double"})


def test_an_enriched_field_may_not_shadow_a_system_field(tmp_path: Path) -> None:
    toml = CATALOG.replace('colour = "string"', 'event_time = "long"').replace(
        '"label", "weight"', '"event_time"'
    )
    with pytest.raises(CatalogError, match="'event_time' would collide"):
        load(tmp_path, toml)


def test_a_stream_may_enrich_from_several_tables(tmp_path: Path) -> None:
    toml = """
[streams.clicks]
key = "user_id"

[[streams.clicks.enrich]]
table = "buttons"
key = "button"
fields = ["label"]

[[streams.clicks.enrich]]
table = "users"
key = "user_id"
fields = ["country"]

[reference.buttons]
fields = { label = "string" }

[reference.users]
fields = { country = "string" }
"""
    spec = load(tmp_path, toml)["clicks"]
    assert [e.table for e in spec.enrich] == ["buttons", "users"]
    entries = {("buttons", "buy"): {"label": "Buy now"}, ("users", "u1"): {"country": "FR"}}
    record = add_reference_attributes(
        spec, {"user_id": "u1", "button": "buy"}, lambda t, k: entries.get((t, k))
    )
    assert (record["label"], record["country"]) == ("Buy now", "FR")


def test_enrichment_copies_the_declared_fields_of_the_entry_of_the_events_key() -> None:
    enrichment = Enrichment("products", "product", (("category", "string"),))
    spec = dataclasses.replace(load_catalog()["purchases"], enrich=(enrichment,))
    entries = {"p1": {"category": "books", "brand": "ignored"}}
    looked_up: list[tuple[str, str]] = []

    def lookup(table: str, key: str) -> dict[str, Any] | None:
        looked_up.append((table, key))
        return entries.get(key)

    assert add_reference_attributes(spec, {"product": "p1"}, lookup) == {
        "product": "p1",
        "category": "books",
    }
    assert add_reference_attributes(spec, {"product": "p2"}, lookup)["category"] is None
    assert add_reference_attributes(spec, {"product": None}, lookup)["category"] is None
    assert looked_up == [("products", "p1"), ("products", "p2")]


def test_an_entry_value_of_the_wrong_type_becomes_null_rather_than_breaking_the_event() -> None:
    enrichment = Enrichment("products", "product", (("unit_cost", "double"), ("n", "int")))
    assert enrichment.attributes({"unit_cost": "cheap", "n": 3}) == {"unit_cost": None, "n": 3}
    assert enrichment.attributes({"unit_cost": 2, "n": 2**40}) == {"unit_cost": 2.0, "n": None}


def test_integer_keys_are_looked_up_as_their_decimal_text() -> None:
    assert [lookup_key(v) for v in ("p1", 42, None, True)] == ["p1", "42", None, None]


@pytest.mark.parametrize(
    ("value", "avro_type", "expected"),
    [
        ("x", "string", "x"),
        (True, "boolean", True),
        (3, "double", 3.0),
        (2.5, "float", 2.5),
        (2**31 - 1, "int", 2**31 - 1),
        (2**40, "long", 2**40),
        (None, "int", None),
    ],
)
def test_coerce_accepts_what_the_avro_type_can_carry(
    value: Any, avro_type: str, expected: Any
) -> None:
    assert coerce(value, avro_type) == expected


@pytest.mark.parametrize(
    ("value", "avro_type"),
    [
        (1, "string"),
        ("1", "int"),
        (True, "int"),
        (True, "double"),
        (2**31, "int"),
        ("x", "boolean"),
    ],
)
def test_coerce_refuses_what_the_avro_type_cannot_carry(value: Any, avro_type: str) -> None:
    with pytest.raises((TypeError, ValueError)):
        coerce(value, avro_type)


def test_an_entry_holds_every_declared_field_with_absent_ones_null() -> None:
    assert PRODUCTS.attributes({"category": "books", "unit_cost": 4}) == {
        "category": "books",
        "in_stock": None,
        "unit_cost": 4.0,
    }


def test_an_invalid_entry_reports_every_unknown_or_mistyped_member() -> None:
    with pytest.raises(InvalidAttributes) as refused:
        PRODUCTS.attributes({"category": 7, "colour": "red", "in_stock": "yes"})
    assert sorted(problem.path for problem in refused.value.problems) == [
        "/category",
        "/colour",
        "/in_stock",
    ]
    with pytest.raises(InvalidAttributes, match="expected a JSON object"):
        PRODUCTS.attributes(["books"])


def test_the_bundled_catalog_declares_the_products_table_and_enriches_purchases() -> None:
    tables = load_reference_tables()
    assert tables["products"].topic == "ref.products"
    spec = load_catalog()["purchases"]
    assert [(e.table, e.key) for e in spec.enrich] == [("products", "product")]
    assert {"category", "brand"} <= {f["name"] for f in spec.clean_schema["fields"]}
