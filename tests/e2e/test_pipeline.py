"""The journey of an event, end to end, through the real processes and engines.

Events carry groups (pages) unique to each test, so the aggregates checked here are exact even
though the pipeline is shared by the whole session.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import httpx
import pytest
import redis
from confluent_kafka import Consumer

from riverbed.core.topology import dlq_topic, series_key
from schemas import codec
from schemas.registry import SchemaRegistry
from streams.metrics.state import window_start
from tests.conftest import WINDOW_SECONDS, Pipeline, wait_until

pytestmark = pytest.mark.e2e
WINDOW_MS = WINDOW_SECONDS * 1000


class SseCollector:
    """Reads an SSE stream in a thread and keeps every parsed message."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = headers
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with (
                httpx.Client(headers=self.headers, timeout=None) as client,
                client.stream("GET", self.url) as response,
            ):
                self.connected.set()
                event = "message"
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        self.messages.append((event, json.loads(line.split(":", 1)[1])))
        except httpx.HTTPError:
            if not self._stop.is_set():
                raise  # the stream broke while the test still listened: surface it

    def stop(self) -> None:
        self._stop.set()


def read_dead_letters(pipeline: Pipeline, stream: str, wanted: set[str]) -> dict[str, dict]:
    """Dead letters of ``stream`` whose event_id is in ``wanted``, read with a real consumer."""
    registry = SchemaRegistry(redis.Redis.from_url(pipeline.engines.redis.url))
    consumer = Consumer(
        {
            "bootstrap.servers": pipeline.engines.kafka.url,
            "group.id": f"test-dlq-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([dlq_topic(stream)])
    found: dict[str, dict] = {}
    try:

        def collect() -> bool:
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    _, record = codec.decode(registry, message.value())
                    if record["event_id"] in wanted:
                        found[record["event_id"]] = record
            return set(found) == wanted

        wait_until(collect, 60, interval=0, message=f"dead letters {sorted(wanted)}")
    finally:
        consumer.close()
    return found


def expected_aggregates(events: list[dict]) -> dict[tuple[str, str, int], dict[str, float]]:
    """(field, group, window_start) -> count/sum/min/max, computed independently of the flow."""
    out: dict[tuple[str, str, int], dict[str, float]] = defaultdict(
        lambda: {"count": 0, "sum": 0.0, "min": float("inf"), "max": float("-inf")}
    )
    for event in events:
        start = window_start(event["ts"], WINDOW_MS)
        for field, value in (("*", 1.0), ("load_ms", event["load_ms"])):
            agg = out[(field, event["page"], start)]
            agg["count"] += 1
            agg["sum"] += value
            agg["min"] = min(agg["min"], value)
            agg["max"] = max(agg["max"], value)
    return out


def page_view(page: str, load_ms: float, event_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "user_id": f"u{uuid.uuid4().hex[:6]}",
        "page": page,
        "load_ms": load_ms,
        "ts": time.time_ns() // 1_000_000,
    }
    if event_id:
        event["event_id"] = event_id
    return event


def test_events_flow_exactly_once_to_clickhouse_redis_dlq_and_sse(pipeline: Pipeline) -> None:
    page = f"/e2e/{uuid.uuid4().hex[:8]}"
    sse = SseCollector(
        f"{pipeline.base_url}/v1/live/metrics?stream=pageviews&group={page}", pipeline.headers
    )
    assert sse.connected.wait(30), "SSE stream did not open"

    valid = [page_view(page, float(10 + i), f"ok-{uuid.uuid4().hex}") for i in range(40)]
    invalid = [
        {**page_view(page, 1.0, f"bad-{uuid.uuid4().hex}"), "load_ms": "slow"},
        {**page_view(page, 1.0, f"bad-{uuid.uuid4().hex}"), "unknown_field": 1},
        {k: v for k, v in page_view(page, 1.0, f"bad-{uuid.uuid4().hex}").items() if k != "page"},
    ]
    with pipeline.client() as client:
        first = client.post("/v1/streams/pageviews/events", json=valid[:20] + invalid)
        assert first.status_code == 207, first.text
        assert first.json()["accepted"] == 20 and first.json()["rejected"] == 3
        assert [e["index"] for e in first.json()["errors"]] == [20, 21, 22]
        # Duplicates: a client retry of the first batch and a repeat inside one batch.
        retry = client.post("/v1/streams/pageviews/events", json=valid[:20])
        assert retry.status_code == 202, retry.text
        assert retry.json()["accepted"] == 0  # told at the edge, not sent again
        assert {r["status"] for r in retry.json()["results"]} == {"duplicate"}
        rest = client.post(
            "/v1/streams/pageviews/events",
            content="\n".join(json.dumps(e) for e in valid[20:] + valid[20:25]),
            headers={"content-type": "application/x-ndjson"},
        )
        assert rest.status_code == 202, rest.text

    valid_ids = sorted(e["event_id"] for e in valid)
    id_list = ", ".join(f"'{i}'" for i in valid_ids)

    def stored_ids() -> list[str]:
        rows = pipeline.query(
            f"SELECT event_id FROM riverbed.events_pageviews FINAL "
            f"WHERE page = '{page}' ORDER BY event_id"
        )
        return [r[0] for r in rows]

    wait_until(
        lambda: stored_ids() == valid_ids,
        60,
        message="ClickHouse to hold exactly the valid distinct events",
    )
    raw_rows = pipeline.query(
        f"SELECT count() FROM riverbed.events_pageviews WHERE event_id IN ({id_list})"
    )
    assert int(raw_rows[0][0]) == len(valid), (
        "duplicates reached ClickHouse (the agent should drop them)"
    )

    dead = read_dead_letters(pipeline, "pageviews", {e["event_id"] for e in invalid})
    reasons = {event_id: letter["error"] for event_id, letter in dead.items()}
    assert "/load_ms" in reasons[invalid[0]["event_id"]]
    assert "unknown field" in reasons[invalid[1]["event_id"]]
    assert "/page" in reasons[invalid[2]["event_id"]]
    assert all(letter["stage"] == "ingest" for letter in dead.values())

    expected = expected_aggregates(valid)
    store = redis.Redis.from_url(pipeline.engines.redis.url)

    def redis_matches() -> bool:
        for (field, group, start), agg in expected.items():
            raw = store.zrangebyscore(series_key("pageviews", field, group), start, start)
            if not raw:
                return False
            value = json.loads(raw[0])
            if not value["final"] or value["count"] != agg["count"]:
                return False
            if abs(value["sum"] - agg["sum"]) > 1e-6:
                return False
            if field != "*" and (value["min"] != agg["min"] or value["max"] != agg["max"]):
                return False
        return True

    wait_until(redis_matches, 60, message="Redis to hold the final window aggregates")

    def clickhouse_metrics() -> dict[tuple[str, int], tuple[int, float]]:
        rows = pipeline.query(
            "SELECT field, toUnixTimestamp64Milli(window_start), count, sum FROM riverbed.metrics "
            f"FINAL WHERE stream = 'pageviews' AND `group` = '{page}' AND final"
        )
        return {(r[0], int(r[1])): (int(r[2]), float(r[3])) for r in rows}

    want = {(f, s): (int(a["count"]), a["sum"]) for (f, _g, s), a in expected.items()}
    wait_until(
        lambda: clickhouse_metrics() == want,
        60,
        message="ClickHouse metrics table to hold the final aggregates",
    )

    total = sum(a["count"] for (f, _g, _s), a in expected.items() if f == "*")
    wait_until(
        lambda: (
            sum(
                m["count"]
                for kind, m in sse.messages
                if kind == "metric" and m["field"] == "*" and m["final"]
            )
            == total
        ),
        30,
        message="SSE clients to receive the final window updates",
    )
    sse.stop()
    assert pipeline.crashes() == {}, pipeline.logs()
