"""The HTTP contract of ingest and reads, against the running pipeline."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


def view(page: str, **overrides: object) -> dict[str, object]:
    return {
        "user_id": "u-int",
        "page": page,
        "load_ms": 12.5,
        "ts": time.time_ns() // 1_000_000,
        **overrides,
    }


def stored(pipeline: Pipeline, event_id: str) -> bool:
    rows = pipeline.query(
        f"SELECT count() FROM riverbed.events_pageviews WHERE event_id = '{event_id}'"
    )
    return rows[0][0] == "1"  # a UInt64: a JSON string


def test_malformed_json_is_a_problem_with_line_and_column(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.post(
            "/v1/streams/pageviews/events",
            content=b'{"user_id": "u1",\n  "page": }',
            headers=JSON,
        )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["title"] == "Malformed body"
    assert body["line"] == 2 and body["column"] > 1


def test_all_invalid_events_get_400_with_each_index_and_path(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.post(
            "/v1/streams/pageviews/events",
            json=[view("/x", load_ms="n/a"), view("/x", ts="yesterday")],
        )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["index"], e["path"]) for e in errors] == [(0, "/load_ms"), (1, "/ts")]
    assert "ISO-8601" in errors[1]["message"]


def test_unknown_stream_is_404_problem(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.post("/v1/streams/nosuch/events", json=view("/x"))
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert "nosuch" in response.json()["detail"]


def test_body_over_the_limit_is_413(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.post(
            "/v1/streams/pageviews/events", content=b"[" + b" " * (6 << 20) + b"]", headers=JSON
        )
    assert response.status_code == 413
    assert response.json()["limit"] == 5 * 1024 * 1024


def test_more_events_than_allowed_per_request_is_413(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.post(
            "/v1/streams/pageviews/events", content=b"[" + b"{}," * 10_000 + b"{}]", headers=JSON
        )
    assert response.status_code == 413
    assert "10001 events" in response.json()["detail"]


def test_atomic_batch_with_one_invalid_event_produces_nothing(pipeline: Pipeline) -> None:
    page = f"/atomic/{uuid.uuid4().hex[:8]}"
    held_back = f"atomic-{uuid.uuid4().hex}"
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    with pipeline.client() as client:
        response = client.post(
            "/v1/streams/pageviews/events?atomic=true",
            json=[view(page, event_id=held_back), view(page, load_ms=None)],
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["index"] == 1
        # Same key, so same partition: once the sentinel is stored, anything produced before it is.
        assert (
            client.post(
                "/v1/streams/pageviews/events", json=view(page, event_id=sentinel)
            ).status_code
            == 202
        )
    wait_until(lambda: stored(pipeline, sentinel), 60, message="the sentinel event")
    assert not stored(pipeline, held_back)


def test_single_event_gets_202_with_its_generated_id(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.post("/v1/streams/pageviews/events", json=view("/single"))
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1 and body["rejected"] == 0
    (event_id,) = body["event_ids"]
    wait_until(lambda: stored(pipeline, event_id), 60, message="the generated-id event")


def test_events_page_newest_first_with_a_cursor(pipeline: Pipeline) -> None:
    page = f"/paging/{uuid.uuid4().hex[:8]}"
    base = time.time_ns() // 1_000_000 - 1_000
    events = [view(page, ts=base + i, event_id=f"{page}-{i}") for i in range(5)]
    with pipeline.client() as client:
        assert client.post("/v1/streams/pageviews/events", json=events).status_code == 202
        wait_until(
            lambda: all(stored(pipeline, e["event_id"]) for e in events),
            60,
            message="the paging events",
        )
        seen: list[str] = []
        cursor = None
        params = {"limit": "2", "from": str(base), "to": str(base + 5)}
        for _ in range(10):
            response = client.get(
                "/v1/streams/pageviews/events",
                params={**params, **({"cursor": cursor} if cursor else {})},
            )
            assert response.status_code == 200
            seen += [e["event_id"] for e in response.json()["events"]]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break
    # Other tests' events may share those milliseconds; ours come newest first, each once.
    assert [e for e in seen if e.startswith(page)] == [f"{page}-{i}" for i in reversed(range(5))]
    assert len(seen) == len(set(seen))


def test_bad_time_parameter_is_400_naming_it(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.get("/v1/streams/pageviews/events", params={"from": "last tuesday"})
    assert response.status_code == 400
    assert response.json()["parameter"] == "from"


def test_query_parameters_are_bound_by_clickhouse_as_data(pipeline: Pipeline) -> None:
    hostile = "x'); DROP TABLE riverbed.metrics; --\n\t\\"
    with pipeline.client() as client:
        bound = client.post(
            "/v1/query",
            json={
                "sql": "SELECT {n:UInt32} + 1 AS n, {s:String} AS s, {b:Bool} AS b, "
                "has({a:Array(String)}, 'z') AS a",
                "params": {"n": 41, "s": hostile, "b": True, "a": ["y", "z"]},
            },
        )
        assert bound.status_code == 200, bound.text
        assert bound.json()["rows"] == [["42", hostile, True, 1]]  # a UInt64: a string
        missing = client.post("/v1/query", json={"sql": "SELECT {n:UInt32}"})
        assert missing.status_code == 400  # not bound: ClickHouse cannot parse it
        named = client.post("/v1/query", json={"sql": "SELECT 1", "params": {"a b": 1}})
        assert named.status_code == 422
        assert pipeline.query("EXISTS TABLE riverbed.metrics") == [[1]]


def test_query_caps_rows_and_says_so(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.post("/v1/query", json={"sql": "SELECT number FROM numbers(20000)"})
    assert response.status_code == 200
    body = response.json()
    assert body["row_count"] == 10_000 and body["truncated"] is True
    assert body["columns"] == [{"name": "number", "type": "UInt64"}]


def test_query_refuses_writes_even_when_disguised(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        plain = client.post("/v1/query", json={"sql": "DROP TABLE riverbed.metrics"})
        disguised = client.post(
            "/v1/query", json={"sql": "SELECT * FROM numbers(1) SETTINGS readonly=0"}
        )
        broken = client.post("/v1/query", json={"sql": "SELECT FROM WHERE"})
    assert plain.status_code == 400 and plain.json()["title"] == "Query not allowed"
    assert disguised.status_code == 400
    assert broken.status_code == 400 and broken.headers["content-type"] == PROBLEM


def test_streams_openapi_and_readiness_describe_the_system(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        streams = client.get("/v1/streams").json()["streams"]
        spec = client.get("/openapi.json").json()
        ready = client.get("/readyz")
    assert {s["name"] for s in streams} >= {"pageviews", "purchases"}  # others may be created
    assert spec["openapi"].startswith("3.1") and "/v1/streams/{stream}/events" in spec["paths"]
    assert ready.status_code == 200
    components = ready.json()["components"]
    assert {"kafka", "redis", "clickhouse"} <= set(components)
    assert all(c["ok"] for c in components.values())


def test_readiness_reports_every_pipeline_process_by_its_heartbeat(pipeline: Pipeline) -> None:
    def processes() -> dict:
        return httpx.get(
            f"{pipeline.base_url}/readyz", headers=pipeline.headers, timeout=10
        ).json()["processes"]

    wanted = {"api", "agents", "flow", "sink-redis", "sink-clickhouse"}
    report = wait_until(
        lambda: wanted <= set(processes()) and processes(),
        30,
        message="heartbeats of every process",
    )
    assert all(report[name]["instances"] == 1 for name in wanted)
    assert all(report[name]["oldest_beat_s"] < 10 for name in wanted)


def test_a_future_event_and_a_repeated_id_are_told_in_the_response(pipeline: Pipeline) -> None:
    now = time.time_ns() // 1_000_000
    event_id = f"dup-{uuid.uuid4().hex}"
    events = [
        {"user_id": "u1", "page": "/f", "load_ms": 1.0, "ts": now, "event_id": event_id},
        {"user_id": "u1", "page": "/f", "load_ms": 2.0, "ts": now, "event_id": event_id},
        {"user_id": "u1", "page": "/f", "load_ms": 3.0, "ts": now + 24 * 3_600_000},
    ]
    with pipeline.client() as client:
        response = client.post("/v1/streams/pageviews/events", json=events)
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["event_ids"] == [event_id]
    assert body["duplicates"] == [{"index": 1, "event_id": event_id, "first_index": 0}]
    assert [(e["index"], e["path"]) for e in body["errors"]] == [(2, "/ts")]
    # The fate of every event, in the order posted:
    assert [(r["index"], r["status"]) for r in body["results"]] == [
        (0, "accepted"),
        (1, "duplicate"),
        (2, "rejected"),
    ]
    assert body["results"][1]["first_index"] == 0
    assert body["results"][2]["event_id"] and body["results"][2]["errors"][0]["path"] == "/ts"


def test_stored_events_read_back_with_iso_8601_utc_timestamps(pipeline: Pipeline) -> None:
    page = f"/iso-{uuid.uuid4().hex[:8]}"
    event = {"user_id": "u1", "page": page, "load_ms": 1.0, "ts": "2026-03-04T05:06:07.089Z"}
    with pipeline.client() as client:
        assert client.post("/v1/streams/pageviews/events", json=event).status_code == 202

        def stored() -> list[dict[str, Any]]:
            window = {"from": "2026-03-04T05:06:07Z", "to": "2026-03-04T05:06:08Z"}
            events = client.get("/v1/streams/pageviews/events", params=window).json()
            return [e for e in events["events"] if e["page"] == page]

        (row,) = wait_until(stored, 60, message="the event to be stored")
    assert row["ts"] == "2026-03-04T05:06:07.089Z"
    assert row["ingested_at"].endswith("Z") and "T" in row["ingested_at"]
