"""Confluent's own SchemaRegistryClient against Riverbed's ``/registry``."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.conftest import Pipeline

pytestmark = pytest.mark.integration


def record(name: str, *fields: dict) -> Schema:
    return Schema(json.dumps({"type": "record", "name": name, "fields": list(fields)}), "AVRO")


@pytest.fixture()
def client(pipeline: Pipeline) -> SchemaRegistryClient:
    # Confluent's clients speak HTTP Basic only: the key goes as the password.
    return SchemaRegistryClient(
        {"url": f"{pipeline.base_url}/registry", "basic.auth.user.info": f"key:{pipeline.key}"}
    )


def test_confluent_client_registers_fetches_and_lists(client: SchemaRegistryClient) -> None:
    subject = f"reg-{uuid.uuid4().hex[:8]}-value"
    v1 = record("Thing", {"name": "id", "type": "string"})
    schema_id = client.register_schema(subject, v1)
    assert client.register_schema(subject, v1) == schema_id  # idempotent
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (schema_id, 1)
    assert json.loads(latest.schema.schema_str) == json.loads(v1.schema_str)
    assert json.loads(client.get_schema(schema_id).schema_str) == json.loads(v1.schema_str)
    assert subject in client.get_subjects()
    assert client.get_versions(subject) == [1]
    assert client.lookup_schema(subject, v1).version == 1


def test_confluent_client_sees_compatibility_decisions(client: SchemaRegistryClient) -> None:
    subject = f"compat-{uuid.uuid4().hex[:8]}-value"
    client.register_schema(subject, record("Thing", {"name": "id", "type": "string"}))
    added_optional = record(
        "Thing", {"name": "id", "type": "string"}, {"name": "n", "type": "int", "default": 0}
    )
    added_required = record("Thing", {"name": "id", "type": "string"}, {"name": "n", "type": "int"})
    assert client.test_compatibility(subject, added_optional) is True
    assert client.test_compatibility(subject, added_required) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, added_required)
    assert refused.value.http_status_code == 409
    assert client.register_schema(subject, added_optional) > 0
    assert client.get_versions(subject) == [1, 2]


def test_incompatible_registration_names_the_rule_and_the_field(pipeline: Pipeline) -> None:
    subject = f"why-{uuid.uuid4().hex[:8]}-value"
    url = f"/registry/subjects/{subject}/versions"
    api = pipeline.client()
    v1 = {"type": "record", "name": "T", "fields": [{"name": "id", "type": "string"}]}
    v2 = {
        "type": "record",
        "name": "T",
        "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}],
    }
    assert api.post(url, json={"schema": json.dumps(v1)}).status_code == 200
    response = api.post(url, json={"schema": json.dumps(v2)})
    assert response.status_code == 409
    body = response.json()
    assert body["error_code"] == 409
    assert response.headers["content-type"] == "application/problem+json"
    (problem,) = body["errors"]
    assert "qty" in problem["path"]
    assert problem["rule"] == "READER_FIELD_MISSING_DEFAULT_VALUE"


def test_compatibility_levels_per_subject_and_global(client: SchemaRegistryClient) -> None:
    subject = f"cfg-{uuid.uuid4().hex[:8]}-value"
    client.register_schema(subject, record("T", {"name": "id", "type": "string"}))
    assert client.get_compatibility() == "BACKWARD"
    assert client.set_compatibility(subject, "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility(subject) == "NONE"
    # NONE lets anything through, even a change of type.
    client.register_schema(subject, record("T", {"name": "id", "type": "long"}))
    with pytest.raises(SchemaRegistryError) as bad:
        client.set_compatibility(subject, "SIDEWAYS")
    assert bad.value.http_status_code == 422


def test_soft_deleted_version_disappears_but_its_id_still_resolves(
    client: SchemaRegistryClient,
) -> None:
    subject = f"del-{uuid.uuid4().hex[:8]}-value"
    first = client.register_schema(subject, record("T", {"name": "id", "type": "string"}))
    client.register_schema(
        subject,
        record(
            "T",
            {"name": "id", "type": "string"},
            {"name": "x", "type": ["null", "int"], "default": None},
        ),
    )
    assert client.delete_version(subject, 1) == 1
    assert client.get_versions(subject) == [2]
    assert client.get_schema(first) is not None
    with pytest.raises(SchemaRegistryError) as gone:
        client.get_version(subject, 1)
    assert gone.value.http_status_code == 404


def test_pipeline_subjects_are_registered_with_topic_name_strategy(
    client: SchemaRegistryClient,
) -> None:
    subjects = set(client.get_subjects())
    for stream in ("pageviews", "purchases"):
        assert {
            f"events.{stream}-value",
            f"clean.{stream}-value",
            f"dlq.{stream}-value",
        } <= subjects
    assert "metrics-value" in subjects


def test_subjects_of_pipeline_streams_cannot_be_deleted(pipeline: Pipeline) -> None:
    url = "/registry/subjects/events.pageviews-value"
    api = pipeline.client()
    version = api.delete(f"{url}/versions/1")
    subject = api.delete(url)
    assert version.status_code == 422 and subject.status_code == 422
    assert version.json()["error_code"] == 42205
    assert api.get(f"{url}/versions/1").status_code == 200


def test_a_stream_with_a_field_clickhouse_cannot_name_is_refused_whole(pipeline: Pipeline) -> None:
    name = f"bad_{uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "key_field": "id",
        "schema": {
            "type": "record",
            "name": "Bad",
            "fields": [{"name": "id", "type": "string"}, {"name": "a-b", "type": "int"}],
        },
    }
    api = pipeline.client()
    response = api.post("/v1/streams", json=body)
    assert response.status_code == 422
    assert "a-b" in response.json()["detail"]
    assert api.get(f"/v1/streams/{name}").status_code == 404


def test_unknown_stream_settings_are_refused_not_dropped(pipeline: Pipeline) -> None:
    name = f"extra_{uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "key": "id",  # the streams.toml spelling of key_field
        "schema": {"type": "record", "name": "E", "fields": [{"name": "id", "type": "string"}]},
        "routes": [{"when": "true", "topic": "x"}],
        "colour": "blue",
    }
    api = pipeline.client()
    response = api.post("/v1/streams", json=body)
    assert response.status_code == 422
    assert sorted(e["path"] for e in response.json()["errors"]) == ["/colour", "/routes"]
    assert api.get(f"/v1/streams/{name}").status_code == 404
