"""Values a client sends reach ClickHouse as query parameters, never as SQL text.

Each request below would change the query's meaning if its value were spliced into SQL
(``' OR 1=1 --``); as a parameter it is only a value that matches nothing.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from api.params import encode_cursor
from tests.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration
INJECTION = "x' OR 1=1 OR stage != '"


def test_a_hostile_stage_filter_matches_no_dead_letter(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        bad = {"user_id": "u", "page": "/rs", "load_ms": "slow", "ts": time.time_ns() // 10**6}
        assert client.post("/v1/streams/pageviews/events", json=bad).status_code == 400
        listed = wait_until(
            lambda: (b := client.get("/v1/streams/pageviews/dlq").json())["dead_letters"] and b,
            30,
            message="the dead letter to be stored",
        )
        assert listed["counts"].get("ingest", 0) >= 1
        # Timestamps read back as ISO-8601 UTC, the form ingest takes; no cursor internals.
        letter = listed["dead_letters"][0]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", letter["failed_at"])
        assert "_t" not in letter
        hostile = client.get("/v1/streams/pageviews/dlq", params={"stage": INJECTION})
        assert hostile.status_code == 200
        assert hostile.json()["dead_letters"] == []


def test_a_hostile_cursor_is_a_position_not_sql(pipeline: Pipeline) -> None:
    page = f"/rs-{uuid.uuid4().hex[:8]}"
    now = time.time_ns() // 10**6
    events = [
        {"user_id": "u", "page": page, "load_ms": 1.0, "ts": now, "event_id": f"rs-{i}-{page}"}
        for i in range(3)
    ]
    with pipeline.client() as client:
        assert client.post("/v1/streams/pageviews/events", json=events).status_code == 202
        cursor = encode_cursor(0, "') OR 1=1 --")  # older than every event: an empty page
        response = client.get("/v1/streams/pageviews/events", params={"cursor": cursor, "limit": 5})
        assert response.status_code == 200
        assert response.json()["events"] == []


def test_replaying_a_hostile_id_finds_no_letter(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.post("/v1/streams/pageviews/dlq/replay", json={"ids": ["' OR 1=1 --"]})
    assert response.status_code == 200
    body = response.json()
    assert body["replayed"] == 0
    assert body["failed"] == [
        {"dlq_id": "' OR 1=1 --", "reason": "no such dead letter in this stream"}
    ]


def test_a_replay_request_without_ids_or_all_names_the_problem(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        response = client.post("/v1/streams/pageviews/dlq/replay", json={"ids": None})
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == ""
