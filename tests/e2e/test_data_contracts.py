"""Streams created and evolved at run time, every Avro type end to end, dead-letter replay.

All streams are created up front by one fixture: the agents worker restarts once to add their
agents, instead of once per test.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Pipeline, wait_until

pytestmark = pytest.mark.e2e
TS = {"type": "long", "logicalType": "timestamp-millis"}


def record_name(stream: str) -> str:
    return stream.title().replace("_", "")


def stream_body(name: str, fields: list[dict], key: str, **extra: Any) -> dict[str, Any]:
    schema = {"type": "record", "name": record_name(name), "fields": fields}
    return {"name": name, "schema": schema, "key_field": key, **extra}


ALL_TYPES = [
    {"name": "s", "type": "string"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "b", "type": "boolean"},
    {"name": "by", "type": "bytes"},
    {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
    {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "ts", "type": TS},
    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "dt", "type": {"type": "int", "logicalType": "date"}},
    {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
    {
        "name": "dec",
        "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
    },
    {"name": "opt", "type": ["null", "string"], "default": None},
    {"name": "arr", "type": {"type": "array", "items": "int"}},
    {"name": "m", "type": {"type": "map", "values": "long"}},
    {
        "name": "rec",
        "type": {
            "type": "record",
            "name": "Point",
            "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "string"}],
        },
    },
]


@pytest.fixture(scope="module")
def streams(pipeline: Pipeline) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    names = {
        "types": f"types_{suffix}",
        "evolve": f"evolve_{suffix}",
        "replay": f"replay_{suffix}",
        "back": f"back_{suffix}",
    }
    bodies = [
        stream_body(names["types"], ALL_TYPES, "s"),
        stream_body(
            names["evolve"],
            [
                {"name": "id", "type": "string"},
                {"name": "amount", "type": "double"},
                {"name": "ts", "type": TS},
            ],
            "id",
            time_field="ts",
            retention_ms=86_400_000,
        ),
        stream_body(
            names["replay"],
            [{"name": "id", "type": "string"}, {"name": "size", "type": "int"}],
            "id",
        ),
        # Created here with the others, not in its test: a new stream restarts the agents and
        # the flow, and a restart at the end of this module ran into the next module's tests.
        stream_body(names["back"], [{"name": "id", "type": "string"}], "id"),
    ]
    with pipeline.client() as client:
        for body in bodies:
            response = client.post("/v1/streams", json=body)
            assert response.status_code == 201, response.text
    yield names


def rows(pipeline: Pipeline, sql: str) -> list[dict[str, Any]]:
    with pipeline.client() as client:
        response = client.post("/v1/query", json={"sql": sql})
    response.raise_for_status()
    body = response.json()
    names = [c["name"] for c in body["columns"]]
    return [dict(zip(names, row, strict=True)) for row in body["rows"]]


def test_creating_a_stream_validates_the_request(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        bad_name = client.post("/v1/streams", json=stream_body("Bad-Name", ALL_TYPES[:1], "s"))
        no_key = client.post("/v1/streams", json=stream_body("nokey", ALL_TYPES[:1], "missing"))
        taken = client.post("/v1/streams", json=stream_body("pageviews", ALL_TYPES[:1], "s"))
    assert bad_name.status_code == 422 and bad_name.json()["errors"][0]["path"] == "/name"
    assert no_key.status_code == 422 and "missing" in no_key.json()["detail"]
    assert taken.status_code == 409


def test_every_avro_type_round_trips_from_ingest_to_a_clickhouse_query(
    pipeline: Pipeline, streams: dict[str, str]
) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    event = {
        "s": key,
        "i": -7,
        "l": 2**53 + 1,  # past what a JSON number (a double) holds exactly
        "f": 1.5,
        "d": 2.25,
        "b": True,
        "by": base64.b64encode(b"\x00\xffraw").decode(),
        "e": "GREEN",
        "fx": base64.b64encode(b"abcd").decode(),
        "ts": "2026-03-04T05:06:07.089Z",
        "tsu": 1_700_000_000_123_456,
        "dt": "2026-03-04",
        "u": "8c5f2a1e-0b7d-4b6f-9a53-3c1d2e4f5a6b",
        "dec": "1234.56",
        "opt": None,
        "arr": [1, 2, 3],
        "m": {"a": 1, "b": 2},
        "rec": {"x": 3, "y": "z"},
    }
    with pipeline.client() as client:
        response = client.post(f"/v1/streams/{streams['types']}/events", json=event)
        assert response.status_code == 202, response.text
    sql = (
        f"SELECT * EXCEPT (event_id, ingested_at, event_time, processed_at) "
        f"FROM riverbed.events_{streams['types']} FINAL WHERE s = '{key}'"
    )
    (row,) = wait_until(lambda: rows(pipeline, sql), 90, message="the all-types event")
    assert row["i"] == -7 and row["l"] == str(2**53 + 1) and row["f"] == 1.5 and row["d"] == 2.25
    assert row["b"] is True
    assert base64.b64decode(row["by"]) == b"\x00\xffraw"
    assert row["e"] == "GREEN"
    assert base64.b64decode(row["fx"]) == b"abcd"
    assert row["ts"] == "2026-03-04T05:06:07.089Z"  # ISO-8601 UTC, as ingest takes it
    assert row["tsu"] == "2023-11-14T22:13:20.123456Z"
    assert row["dt"] == "2026-03-04"
    assert row["u"] == "8c5f2a1e-0b7d-4b6f-9a53-3c1d2e4f5a6b"
    assert float(row["dec"]) == 1234.56
    assert row["opt"] is None
    assert row["arr"] == [1, 2, 3]
    assert row["m"] == {"a": "1", "b": "2"}  # Int64 values: JSON strings
    assert row["rec"] == '{"x": 3, "y": "z"}'


def test_evolved_schema_adds_a_column_and_old_producers_keep_working(
    pipeline: Pipeline, streams: dict[str, str]
) -> None:
    name = streams["evolve"]
    now = time.time_ns() // 1_000_000
    with pipeline.client() as client:
        v1 = [{"id": f"v1-{i}", "amount": 1.0, "ts": now} for i in range(3)]
        assert client.post(f"/v1/streams/{name}/events", json=v1).status_code == 202
        fields = [
            {"name": "id", "type": "string"},
            {"name": "amount", "type": "double"},
            {"name": "ts", "type": TS},
            {"name": "currency", "type": "string", "default": "EUR"},
            {"name": "note", "type": ["null", "string"], "default": None},
        ]
        evolved = client.put(
            f"/v1/streams/{name}/schema",
            json={"schema": {"type": "record", "name": record_name(name), "fields": fields}},
        )
        assert evolved.status_code == 200, evolved.text
        assert evolved.json()["schema_version"] == 2
        breaking = client.put(
            f"/v1/streams/{name}/schema",
            json={
                "schema": {
                    "type": "record",
                    "name": record_name(name),
                    "fields": [*fields, {"name": "required_now", "type": "int"}],
                }
            },
        )
        assert breaking.status_code == 409
        assert breaking.json()["errors"][0]["rule"] == "READER_FIELD_MISSING_DEFAULT_VALUE"
        assert "required_now" in breaking.json()["errors"][0]["path"]
        v2 = [
            {"id": f"v2-{i}", "amount": 2.0, "ts": now, "currency": "USD", "note": "n"}
            for i in range(3)
        ]
        assert client.post(f"/v1/streams/{name}/events", json=v2).status_code == 202
        old = [{"id": f"old-{i}", "amount": 3.0, "ts": now} for i in range(3)]
        posted_old = client.post(f"/v1/streams/{name}/events?schema_version=1", json=old)
        assert posted_old.status_code == 202, posted_old.text
        unknown_version = client.post(f"/v1/streams/{name}/events?schema_version=9", json=old)
        assert unknown_version.status_code == 404
    sql = f"SELECT id, currency, note FROM riverbed.events_{name} FINAL ORDER BY id"
    stored = wait_until(
        lambda: (r := rows(pipeline, sql)) and len(r) == 9 and r,
        90,
        message="v1, v2 and old-producer events in ClickHouse",
    )
    by_id = {r["id"]: (r["currency"], r["note"]) for r in stored}
    assert all(by_id[f"v1-{i}"] == ("EUR", None) for i in range(3))  # old rows read the default
    assert all(by_id[f"v2-{i}"] == ("USD", "n") for i in range(3))
    assert all(by_id[f"old-{i}"] == ("EUR", None) for i in range(3))


def test_going_back_to_an_earlier_schema_makes_it_the_registrys_latest(
    pipeline: Pipeline, streams: dict[str, str]
) -> None:
    name = streams["back"]
    first = [{"name": "id", "type": "string"}]
    added = [*first, {"name": "extra", "type": "int", "default": 0}]
    with pipeline.client() as client:
        for fields, version in ((added, 2), (first, 3)):
            schema = {"type": "record", "name": record_name(name), "fields": fields}
            evolved = client.put(f"/v1/streams/{name}/schema", json={"schema": schema})
            assert evolved.status_code == 200, evolved.text
            assert evolved.json()["schema_version"] == version
        latest = client.get(f"/registry/subjects/events.{name}-value/versions/latest").json()
        assert latest["version"] == 3
        registered = json.loads(latest["schema"])
        assert [f["name"] for f in registered["fields"]] == ["id", "event_id", "ingested_at"]
        refused = client.post(f"/v1/streams/{name}/events", json={"id": "a", "extra": 1})
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["path"] == "/extra"
        assert client.post(f"/v1/streams/{name}/events", json={"id": "a"}).status_code == 202


def test_dead_letters_are_listed_and_replayed_once_the_schema_is_fixed(
    pipeline: Pipeline, streams: dict[str, str]
) -> None:
    name = streams["replay"]
    with pipeline.client() as client:
        missing = [{"id": f"r-{i}", "event_id": f"dl-{uuid.uuid4().hex}"} for i in range(2)]
        response = client.post(f"/v1/streams/{name}/events", json=missing)
        assert response.status_code == 400
        letters = wait_until(
            lambda: (
                len(d := client.get(f"/v1/streams/{name}/dlq").json()["dead_letters"]) == 2 and d
            ),
            60,
            message="the two dead letters",
        )
        assert {letter["stage"] for letter in letters} == {"ingest"}
        assert all("/size" in letter["error"] for letter in letters)
        # Still broken: replay reports the reason and leaves them in the DLQ.
        early = client.post(f"/v1/streams/{name}/dlq/replay", json={"all": True}).json()
        assert early["replayed"] == 0 and len(early["failed"]) == 2
        fixed = {
            "type": "record",
            "name": record_name(name),
            "fields": [
                {"name": "id", "type": "string"},
                {"name": "size", "type": "int", "default": 0},
            ],
        }
        assert client.put(f"/v1/streams/{name}/schema", json={"schema": fixed}).status_code == 200
        replay = client.post(f"/v1/streams/{name}/dlq/replay", json={"all": True}).json()
        assert replay["replayed"] == 2 and replay["failed"] == []
        again = client.post(f"/v1/streams/{name}/dlq/replay", json={"all": True}).json()
        assert again["requested"] == 0
        listed = client.get(f"/v1/streams/{name}/dlq").json()
        assert all(letter["replayed"] for letter in listed["dead_letters"])
        assert listed["counts"] == {"ingest": 2}
    sql = f"SELECT id, size FROM riverbed.events_{name} FINAL ORDER BY id"
    stored = wait_until(
        lambda: (r := rows(pipeline, sql)) and len(r) == 2 and r,
        90,
        message="the replayed events in ClickHouse",
    )
    assert [(r["id"], r["size"]) for r in stored] == [("r-0", 0), ("r-1", 0)]
    ready = httpx.get(f"{pipeline.base_url}/readyz", headers=pipeline.headers, timeout=30).json()
    assert ready["streams"][name]["dead_letters_by_stage"] == {"ingest": 2}
    assert ready["streams"][name]["dead_letters"] == 2  # every stage, not only the agents'
