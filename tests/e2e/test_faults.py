"""Kill an engine mid-stream: every accepted event is still stored exactly once.

A producer posts with retries and stable event ids, as the ingest contract asks. Each test
runs a pipeline with engines of its own, so what it kills cannot disturb the other tests.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from riverbed.embedded import start_kafka, start_redis
from tests.conftest import PIPELINE_COMPONENTS, start_components, wait_until

pytestmark = pytest.mark.e2e


def page_views(page: str, count: int) -> list[dict[str, Any]]:
    now = time.time_ns() // 1_000_000
    return [
        {"event_id": f"{page}-{i}", "user_id": f"u{i % 7}", "page": page, "load_ms": 1.0, "ts": now}
        for i in range(count)
    ]


def post_until_accepted(base: str, events: list[dict[str, Any]], timeout: float = 90) -> None:
    """Retry with the same event ids until every event is accepted (202), as a producer would."""

    def accepted() -> bool:
        response = httpx.post(f"{base}/v1/streams/pageviews/events", json=events, timeout=15)
        return response.status_code == 202

    wait_until(accepted, timeout, interval=0.5, message="the batch to be accepted")


def stored(base: str, page: str) -> tuple[int, int]:
    sql = (
        "SELECT count(), uniqExact(event_id) FROM riverbed.events_pageviews FINAL "
        f"WHERE page = '{page}'"
    )
    response = httpx.post(f"{base}/v1/query", json={"sql": sql}, timeout=15)
    response.raise_for_status()
    rows = response.json()["rows"][0]
    return int(rows[0]), int(rows[1])


def test_valkey_killed_mid_stream_loses_no_accepted_event(tmp_path: Path) -> None:
    kafka = start_kafka(tmp_path)
    valkey = start_redis(tmp_path)
    port = int(valkey.url.rsplit(":", 1)[1].split("/")[0])
    env = {"KAFKA_BOOTSTRAP": kafka.url, "REDIS_URL": valkey.url, "RIVERBED_LOG_LEVEL": "ERROR"}
    supervisor, base = start_components(tmp_path, env, PIPELINE_COMPONENTS, interval=0.2)
    page = f"/fault-valkey-{uuid.uuid4().hex[:8]}"
    before, during = page_views(page, 300), page_views(page, 600)[300:]
    try:
        post_until_accepted(base, before)
        valkey.process.kill()
        valkey.process.wait(10)
        # Whatever the API answers while Redis is gone, the producer retries until 202; the
        # agents meet the outage in the middle of those batches and crash.
        httpx.post(f"{base}/v1/streams/pageviews/events", json=during, timeout=15)
        wait_until(
            lambda: any(c.name == "agents" and c.history for c in supervisor.children),
            60,
            message="the agents to meet the outage",
        )
        valkey = start_redis(tmp_path, port)  # same port, same AOF: an operator's restart
        post_until_accepted(base, during)
        wait_until(
            lambda: stored(base, page) == (600, 600),
            120,
            message=f"all 600 events stored once (have {stored(base, page)})",
        )
        letters = httpx.get(f"{base}/v1/streams/pageviews/dlq", timeout=15).json()
        assert letters["counts"] == {}, letters
    finally:
        supervisor.stop()
        valkey.stop()
        kafka.stop()
