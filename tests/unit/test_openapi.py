"""One route table: every route the app serves is documented, with the scope it needs."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from api.app import create_app
from api.endpoint import PUBLIC, SCOPES
from api.openapi import build_openapi
from api.routes import ROUTES
from riverbed.core.settings import Settings
from schemas.catalog import load_catalog
from schemas.json_schema import avro_to_json_schema
from schemas.validation import validate_event
from tests.helpers.keys import make_identity

CATALOG = load_catalog()
DOCUMENT = build_openapi(CATALOG, ROUTES)
APP = create_app(Settings(), identity=make_identity())


def served() -> set[tuple[str, str]]:
    """(path, method) of every route the app answers, mounts included."""
    pairs = set()
    for route in APP.routes:
        if isinstance(route, Route):
            pairs |= {(route.path, m) for m in route.methods or () if m != "HEAD"}
        elif isinstance(route, Mount):
            pairs.add((route.path, "GET"))
    return pairs


def documented() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, operations in DOCUMENT["paths"].items()
        for method in operations
    }


def test_every_served_route_is_in_the_document_and_nothing_else() -> None:
    assert served() == documented()


def test_the_registry_and_admin_routes_are_documented() -> None:
    paths = DOCUMENT["paths"]
    assert "post" in paths["/registry/subjects/{subject}/versions"]
    assert "put" in paths["/v1/streams/{stream}/schema"]
    assert "post" in paths["/v1/streams/{stream}/dlq/replay"]
    assert "get" in paths["/v1/streams/{stream}/dlq"]


def test_every_operation_names_a_known_scope_and_requires_it() -> None:
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            scope = operation["x-scope"]
            assert scope in SCOPES, (path, method)
            expected = [] if scope == PUBLIC else [{"bearer": [scope]}]
            assert operation["security"] == expected, (path, method)


def test_writes_never_share_a_scope_with_reads() -> None:
    for endpoint in ROUTES:
        if endpoint.method != "GET" and ":" in endpoint.scope:
            assert endpoint.scope.split(":")[1] != "read", endpoint.name
        if endpoint.scope == PUBLIC:
            # Public writes are only those carrying their own credential (password, token).
            assert endpoint.method == "GET" or endpoint.tag == "identity", endpoint.name


def test_every_scope_is_used_by_some_route() -> None:
    assert {e.scope for e in ROUTES} == set(SCOPES)


def test_operation_ids_are_unique() -> None:
    names = [e.name for e in ROUTES]
    assert len(names) == len(set(names))


def test_path_parameters_are_declared_for_every_placeholder() -> None:
    for path, operations in DOCUMENT["paths"].items():
        placeholders = set(re.findall(r"{(\w+)}", path))
        for operation in operations.values():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == placeholders, path


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)


def test_request_bodies_come_from_the_models_handlers_parse_with() -> None:
    create = DOCUMENT["paths"]["/v1/streams"]["post"]["requestBody"]
    assert create["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewStream"
    }
    assert "key_field" in DOCUMENT["components"]["schemas"]["NewStream"]["required"]
    metric = DOCUMENT["components"]["schemas"]["MetricDefinition"]
    assert {"name", "stream", "aggregations", "window"} <= set(metric["required"])


def _stream_schema(name: str) -> dict[str, Any]:
    return DOCUMENT["components"]["schemas"][name]


@pytest.mark.parametrize("stream", sorted(CATALOG))
def test_each_streams_json_schema_accepts_what_ingest_accepts(stream: str) -> None:
    schema = _stream_schema(stream)
    spec = CATALOG[stream]
    sample = {f["name"]: _sample(f["type"]) for f in spec.schema["fields"] if "default" not in f}
    _, problems = validate_event(spec.schema, sample)
    assert problems == [], problems
    jsonschema.validate(sample, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**sample, "not_a_field": 1}, schema)


def _sample(avro: Any) -> Any:
    if isinstance(avro, list):
        return None if "null" in avro else _sample(avro[0])
    if isinstance(avro, dict):
        if avro.get("logicalType", "").startswith("timestamp"):
            return "2026-12-01T00:00:00Z"
        if avro["type"] == "enum":
            return avro["symbols"][0]
        if avro["type"] == "array":
            return []
        if avro["type"] == "map":
            return {}
        return _sample(avro["type"])
    return {"string": "x", "int": 1, "long": 1, "double": 1.5, "float": 1.5, "boolean": True}[avro]


def test_a_recursive_avro_record_becomes_a_finite_json_schema() -> None:
    node = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "value", "type": "int"},
            {"name": "next", "type": ["null", "Node"], "default": None},
        ],
    }
    schema = avro_to_json_schema(node)
    assert schema["properties"]["next"] == {"anyOf": [{"type": "null"}, {"type": "object"}]}
    assert schema["required"] == ["value"]


def test_docs_are_served_from_the_package_without_a_cdn() -> None:
    client = TestClient(APP, base_url="http://127.0.0.1")
    page = client.get("/docs/")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/docs/swagger-ui-bundle.js").status_code == 200
    assert "../openapi.json" in client.get("/docs/init.js").text


def test_a_stream_declared_over_http_takes_the_files_key_spelling_and_nothing_unknown() -> None:
    from pydantic import ValidationError

    from api.models import NewStream

    schema = {"type": "record", "name": "E", "fields": [{"name": "id", "type": "string"}]}
    assert NewStream.model_validate({"name": "s", "key": "id", "schema": schema}).key_field == "id"
    assert NewStream.model_validate({"name": "s", "key_field": "id", "schema": schema}).key_field
    with pytest.raises(ValidationError):
        NewStream.model_validate({"name": "s", "key": "id", "schema": schema, "routes": []})
