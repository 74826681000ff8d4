"""``GET /v1/live/metrics`` over HTTP: message ids, ``retry:``, resume with ``Last-Event-ID``.

A dashboard disconnects while updates keep coming and reconnects with the id of the last
message it got: it receives exactly what it missed, in order, then live updates, as a plain
EventSource would.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.conftest import WINDOW_SECONDS, Pipeline
from tests.helpers.sse import messages, read_until

pytestmark = pytest.mark.e2e
WINDOW_MS = WINDOW_SECONDS * 1000


def page_views(page: str, count: int, ts: int) -> list[dict]:
    return [{"user_id": f"u{i}", "page": page, "load_ms": float(i), "ts": ts} for i in range(count)]


def next_window() -> int:
    """The start of the next window: both batches land in one window that stays open (by the
    clock) for the whole test, so its count goes 3, then 7."""
    now = time.time_ns() // 1_000_000
    return now - now % WINDOW_MS + WINDOW_MS


def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(pipeline: Pipeline) -> None:
    page = f"/resume/{uuid.uuid4().hex[:8]}"
    url = f"{pipeline.base_url}/v1/live/metrics?stream=pageviews&group={page}&field=*"
    ts = next_window()
    with httpx.Client(
        base_url=pipeline.base_url, headers=pipeline.headers, timeout=httpx.Timeout(30)
    ) as client:
        with client.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["x-accel-buffering"] == "no"
            # The start went through the middlewares (the body goes past them, api.live.stream).
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-request-id"]
            stream = messages(response)
            first = read_until(stream, lambda got: got[-1].event == "ready", time.monotonic() + 30)
            assert first[0].retry is not None  # the reconnect delay hint
            ready = first[-1]
            assert ready.id
            client.post(
                "/v1/streams/pageviews/events", json=page_views(page, 3, ts)
            ).raise_for_status()
            before = read_until(
                stream, lambda got: got[-1].json()["count"] >= 3, time.monotonic() + 30
            )
        last = before[-1]
        # Away: more updates of the same window come while nobody listens.
        client.post("/v1/streams/pageviews/events", json=page_views(page, 4, ts)).raise_for_status()
        with client.stream("GET", url, headers={"Last-Event-ID": last.id or ""}) as response:
            after = read_until(
                messages(response),
                lambda got: got[-1].json().get("count", 0) >= 7,
                time.monotonic() + 30,
            )
    updates = [m for m in before + after if m.event == "metric"]
    ids = [m.id for m in updates]
    assert len(ids) == len(set(ids)), "a message was delivered twice"
    order = [tuple(int(p) for p in (i or "0-0").split("-")) for i in ids]
    assert order == sorted(order), "messages out of order"
    assert all(m.event == "metric" for m in after), [m.event for m in after]  # no snapshot
    counts = [m.json()["count"] for m in updates]
    assert counts == sorted(counts) and counts[-1] == 7  # the window's count only grows


def test_an_unknown_last_event_id_gets_reset_and_a_snapshot(pipeline: Pipeline) -> None:
    url = f"{pipeline.base_url}/v1/live/metrics?stream=pageviews"
    with (
        httpx.Client(headers=pipeline.headers, timeout=httpx.Timeout(30)) as client,
        client.stream("GET", url, params={"last_event_id": "99999999999999-0"}) as response,
    ):
        got = read_until(
            messages(response), lambda got: got[-1].event == "ready", time.monotonic() + 30
        )
    assert got[0].event == "reset"
    assert got[-1].event == "ready" and got[-1].id
