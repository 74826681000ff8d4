"""Two Faust workers and two Bytewax workers give the same exact results as one of each.

The stack has a broker and a Redis database of its own. The agents' consumer group must really
be shared (two members, each owning partitions), and the flow runs with
``RIVERBED_FLOW_WORKERS=2``, so partitions and keyed window state are split between workers.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import redis

from riverbed.core.topology import series_key, stats_key
from streams.metrics.state import window_start
from tests.conftest import Engines, OwnStack, api_client, own_stack, read_logs, wait_until

pytestmark = pytest.mark.e2e
WINDOW_MS = 5000
EVENTS = 3000


def test_two_agent_workers_and_two_flow_workers_keep_results_exact(
    engines: Engines, tmp_path: Path
) -> None:
    env = {
        "RIVERBED_WINDOW_SECONDS": str(WINDOW_MS // 1000),
        "RIVERBED_ALLOWED_LATENESS_SECONDS": "2",
        "RIVERBED_WINDOW_IDLE_GRACE_SECONDS": "60",
        "RIVERBED_FLOW_WORKERS": "2",
    }
    components = ("api", "agents", "agents#2", "flow", "sink-redis", "sink-clickhouse")
    with own_stack(engines, tmp_path, 14, env, components) as stack:
        try:
            check_exact_results(stack)
        except AssertionError:
            print(read_logs(tmp_path))
            raise


def check_exact_results(stack: OwnStack) -> None:
    base, supervisor = stack.base, stack.supervisor
    store = redis.Redis.from_url(stack.redis_url)
    now = time.time_ns() // 1_000_000
    events = [
        {
            "event_id": f"scale-{uuid.uuid4().hex}",
            "user_id": f"u{i % 97}",
            "page": f"/s{i % 6}",
            "load_ms": float(i % 250),
            "ts": now + (i * 7) % 1500,
        }
        for i in range(EVENTS)
    ]
    with api_client(base, stack.key) as client:
        for i in range(0, EVENTS, 250):
            response = client.post("/v1/streams/pageviews/events", json=events[i : i + 250])
            assert response.status_code == 202, response.text

        def stored() -> bool:
            response = client.post(
                "/v1/query",
                json={
                    "sql": "SELECT count(), uniqExact(event_id)"
                    " FROM riverbed.events_pageviews FINAL"
                },
            )
            return bool(response.json()["rows"] == [[str(EVENTS), str(EVENTS)]])  # UInt64s

        wait_until(stored, 120, interval=0.5, message="every event once in ClickHouse")

    want: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0])
    for event in events:
        start = window_start(event["ts"], WINDOW_MS)
        for group in ("*", event["page"]):
            want[(group, start)][0] += 1
            want[(group, start)][1] += event["load_ms"]

    def mismatches() -> list[str]:
        wrong = []
        for (group, start), (count, total) in want.items():
            raw = store.zrangebyscore(series_key("pageviews", "load_ms", group), start, start)
            got = json.loads(raw[0]) if raw else {"count": None, "sum": None}
            if got["count"] != count or abs((got["sum"] or 0) - total) > 1e-6:
                wrong.append(f"{group}@{start}: want {count}/{total}, got {got}")
        return wrong

    try:
        wait_until(lambda: not mismatches(), 120, interval=0.5, message="exact aggregates")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {mismatches()[:5]}") from None
    assert not [c.name for c in supervisor.children if c.history]  # nothing crashed
    # Both agents replicas did part of the work (each owns some partitions).
    shares = {
        k.decode(): int(v)
        for k, v in store.hgetall(stats_key("pageviews")).items()
        if k.startswith(b"processed:")
    }
    assert set(shares) == {"processed:0", "processed:1"}, shares
    assert all(shares.values()) and sum(shares.values()) >= EVENTS, shares
