"""The live channels beside metrics: the event tail and alerts, each behind its own scope.

The tail is written by the agents (a sample of processed events); alerts by the alert rules,
through :func:`riverbed.core.live_log.append`, as this test writes one. Each channel resumes
from ``Last-Event-ID`` like the metrics do.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import redis

from control.keys import key_store
from control.scopes import ROLES
from riverbed.core.live_log import append
from riverbed.core.settings import Settings
from riverbed.core.topology import ALERTS_CHANNEL
from tests.conftest import Pipeline, bearer
from tests.helpers.sse import Message, messages, read_until

pytestmark = pytest.mark.e2e


def test_the_tail_shows_processed_events_of_the_stream(pipeline: Pipeline) -> None:
    page = f"/tail/{uuid.uuid4().hex[:8]}"
    url = f"{pipeline.base_url}/v1/live/events?stream=pageviews"
    with (
        httpx.Client(base_url=pipeline.base_url, headers=pipeline.headers, timeout=30) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200
        stream = messages(response)
        assert next(stream).event == "ready"
        seen: list[Message] = []
        deadline = time.monotonic() + 60

        def ours(message: Message) -> bool:
            return message.event == "tail" and message.json()["event"].get("page") == page

        # The tail is a sample: post until one of this test's events shows (the first does,
        # unless another test used up this second's share).
        while not seen and time.monotonic() < deadline:
            event = {"user_id": "u1", "page": page, "load_ms": 1.0, "ts": int(time.time() * 1000)}
            client.post("/v1/streams/pageviews/events", json=event).raise_for_status()
            got = read_until(stream, lambda got: ours(got[-1]), time.monotonic() + 5)
            seen = [m for m in got if ours(m)]
    assert seen, "no event of this test reached the tail"
    tail = seen[0]
    assert tail.id and tail.json()["stream"] == "pageviews"
    assert tail.json()["event"]["event_id"]  # the processed (clean) event, as it was stored


def test_alerts_arrive_live_and_resume_from_the_last_id(pipeline: Pipeline) -> None:
    rule = f"rule-{uuid.uuid4().hex[:8]}"
    log = redis.Redis.from_url(pipeline.engines.redis.url)
    url = f"{pipeline.base_url}/v1/live/alerts?rule={rule}"
    with httpx.Client(headers=pipeline.headers, timeout=30) as client:
        with client.stream("GET", url) as response:
            stream = messages(response)
            assert next(stream).event == "ready"
            append(log, ALERTS_CHANNEL, {"rule": rule, "state": "firing", "n": 1}, 1000)
            append(log, ALERTS_CHANNEL, {"rule": "another", "state": "firing"}, 1000)
            first = next(stream)
        assert first.event == "alert" and first.json() == {"rule": rule, "state": "firing", "n": 1}
        for n in (2, 3):  # while away
            append(log, ALERTS_CHANNEL, {"rule": rule, "state": "resolved", "n": n}, 1000)
        with client.stream("GET", url, headers={"Last-Event-ID": first.id or ""}) as response:
            stream = messages(response)
            missed = [next(stream), next(stream)]
    assert [m.json()["n"] for m in missed] == [2, 3]
    assert all(m.event == "alert" for m in missed)


def test_each_channel_needs_its_scope_and_a_stream_token_carries_only_those(
    pipeline: Pipeline,
) -> None:
    keys = key_store(Settings(data_dir=pipeline.data_dir))
    producer, _ = keys.create("live channels producer", ROLES["producer"])
    viewer, _ = keys.create("live channels viewer", ROLES["viewer"])
    base = pipeline.base_url
    for path in ("/v1/live/metrics", "/v1/live/events", "/v1/live/alerts"):
        refused = httpx.get(f"{base}{path}", headers=bearer(producer), timeout=10)
        assert refused.status_code == 403, path
    # A viewer follows metrics and alerts, not the events themselves.
    assert httpx.get(f"{base}/v1/live/events", headers=bearer(viewer)).status_code == 403
    token = httpx.post(f"{base}/v1/auth/stream-token", headers=bearer(viewer)).json()
    with httpx.stream(
        "GET", f"{base}/v1/live/alerts?stream_token={token['stream_token']}", timeout=10
    ) as response:
        assert response.status_code == 200
    events = httpx.get(f"{base}/v1/live/events?stream_token={token['stream_token']}")
    assert events.status_code == 403
    no_token = httpx.post(f"{base}/v1/auth/stream-token", headers=bearer(producer))
    assert no_token.status_code == 403
