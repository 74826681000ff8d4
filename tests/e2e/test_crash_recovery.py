"""Exact results through crashes: SIGKILL the agents, the flow, the API (which runs the
ClickHouse sink) and the Redis sink at seeded random moments while events stream in; the
built-in window aggregates and a declared metric (from metrics.yaml) must both come out exact.

Each seed runs a pipeline of its own (broker, Redis database, data dir), posts a fixed set of
events like a client that retries until it hears 202, and checks that ClickHouse holds every
event exactly once and that every window aggregate, in Redis and in ClickHouse, equals a
reference computed here.
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from riverbed.core.topology import series_key
from streams.metrics.state import window_start
from tests.conftest import Engines, OwnStack, own_stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.crash]
WINDOW_MS = 5000
BATCHES = 24
BATCH = 100
EVENTS = BATCHES * BATCH
SPREAD_MS = 1500  # below RIVERBED_ALLOWED_LATENESS_SECONDS
# A declared metric computed alongside the built-in ones, from the data dir's metrics.yaml.
DECLARED = {
    "name": "crash_pages",
    "stream": "pageviews",
    "aggregations": ["count", "sum(load_ms)", "max(load_ms)", "count_distinct(user_id)"],
    "group_by": ["page"],
    "window": {"type": "tumbling", "size": f"{WINDOW_MS}ms"},
}
VICTIMS = ("agents", "flow", "api", "sink-redis")


class Stack(OwnStack):
    def kill(self, name: str) -> None:
        self.supervisor.signal(name, signal.SIGKILL)


@pytest.fixture()
def stack(engines: Engines, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    env = {
        "RIVERBED_WINDOW_SECONDS": str(WINDOW_MS // 1000),
        "RIVERBED_ALLOWED_LATENESS_SECONDS": "2",
        # Longer than any restart here, so events held up by a killed agent are not late.
        "RIVERBED_WINDOW_IDLE_GRACE_SECONDS": "60",
    }
    (tmp_path / "metrics.yaml").write_text(json.dumps({"metrics": [DECLARED]}))  # YAML ⊇ JSON
    database = 3 + request.node.callspec.params["seed"] % 10
    with own_stack(engines, tmp_path, database, env) as own:
        yield Stack(own.base, own.kafka, own.redis_url, own.supervisor, own.key)


def make_batch(rng: random.Random, index: int) -> list[dict]:
    """One batch as a producer would stamp it: event times around *now*, shuffled within
    ``SPREAD_MS`` (less than the allowed lateness, so no event is late by construction).

    A client that cannot reach the API keeps its events (and their timestamps) and retries, so
    the times are taken once, when the batch is made, not at each attempt.
    """
    now = time.time_ns() // 1_000_000
    return [
        {
            "event_id": f"crash-{index}-{i}-{uuid.uuid4().hex[:8]}",
            "user_id": f"u{rng.randint(1, 50)}",
            "page": f"/p{rng.randint(0, 4)}",
            "load_ms": float(rng.randint(1, 500)),
            "ts": now + rng.randint(0, SPREAD_MS),
        }
        for i in range(BATCH)
    ]


def reference(events: list[dict]) -> dict[tuple[str, str, int], tuple[int, float]]:
    """(field, group, window) -> (count, sum), computed without the pipeline."""
    out: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0, 0.0])
    for event in events:
        start = window_start(event["ts"], WINDOW_MS)
        for group in ("*", event["page"]):
            for field, value in (("*", 1.0), ("load_ms", event["load_ms"])):
                agg = out[(field, group, start)]
                agg[0] += 1
                agg[1] += value
    return {key: (int(count), total) for key, (count, total) in out.items()}


def post_until_accepted(api: httpx.Client, batch: list[dict]) -> None:
    """A client that retries the same events (same event_ids) until Riverbed accepts them."""

    def accepted() -> bool:
        try:
            response = api.post("/v1/streams/pageviews/events", json=batch, timeout=30)
        except httpx.HTTPError:
            return False  # API down (killed): retry
        return response.status_code == 202

    wait_until(accepted, 120, interval=0.2, message="ingest to accept a batch")


def query(api: httpx.Client, sql: str) -> list[list]:
    response = api.post("/v1/query", json={"sql": sql}, timeout=30)
    response.raise_for_status()
    return response.json()["rows"]


@pytest.mark.parametrize("seed", [11, 22, 33, 44])
def test_killed_processes_restart_and_every_count_stays_exact(stack: Stack, seed: int) -> None:
    rng = random.Random(seed)
    # Every victim dies once per run, in a seeded order at seeded moments.
    victims = list(VICTIMS)
    rng.shuffle(victims)
    kills = dict(zip(sorted(rng.sample(range(2, BATCHES - 1), len(victims))), victims, strict=True))
    wait_until(
        lambda: stack.api.get("/v1/metrics/crash_pages", timeout=5).json()["running"],
        30,
        message="the flow to run the declared metric",
    )
    events: list[dict] = []
    for index in range(BATCHES):
        batch = make_batch(rng, index)
        events += batch
        if index in kills:
            stack.kill(kills[index])
        post_until_accepted(stack.api, batch)

    def crashed() -> set[str]:
        return {c.name for c in stack.supervisor.children if c.history}

    # The kills happened (the supervisor saw each victim die), and nothing else died.
    wait_until(lambda: crashed() == set(kills.values()), 30, message=f"the kills {kills}")

    ids = sorted(e["event_id"] for e in events)

    def stored() -> bool:
        ((count, distinct),) = query(
            stack.api, "SELECT count(), uniqExact(event_id) FROM riverbed.events_pageviews FINAL"
        )
        return int(count) == int(distinct) == EVENTS  # UInt64s: JSON strings

    wait_until(stored, 180, interval=0.5, message="every event exactly once in ClickHouse")
    got = [
        r[0]
        for r in query(
            stack.api, "SELECT event_id FROM riverbed.events_pageviews FINAL ORDER BY event_id"
        )
    ]
    assert got == ids

    want = reference(events)
    store = redis.Redis.from_url(stack.redis_url)

    def redis_mismatches() -> list[str]:
        wrong = []
        for (field, group, start), (count, total) in sorted(want.items()):
            raw = store.zrangebyscore(series_key("pageviews", field, group), start, start)
            value = json.loads(raw[0]) if raw else {"count": None, "sum": None}
            if value["count"] != count or abs((value["sum"] or 0) - total) > 1e-6:
                wrong.append(
                    f"{field}|{group}@{start}: want {count}/{total}, "
                    f"got {value['count']}/{value['sum']}"
                )
        return wrong

    try:
        wait_until(
            lambda: not redis_mismatches(), 120, interval=0.5, message="exact aggregates in Redis"
        )
    except AssertionError as exc:
        totals = store.zrange(series_key("pageviews", "*", "*"), 0, -1, withscores=True)
        in_clickhouse = query(
            stack.api,
            "SELECT toUnixTimestamp64Milli(window_start), count, "
            "version, final FROM riverbed.metrics FINAL WHERE stream = "
            "'pageviews' AND field = '*' AND `group` = '*'",
        )
        dead = query(
            stack.api,
            "SELECT stage, error, count() FROM riverbed.dead_letters FINAL GROUP BY stage, error",
        )
        raise AssertionError(
            f"{exc}; first differences: {redis_mismatches()[:6]}; "
            f"redis *|*: {totals}; clickhouse *|*: {in_clickhouse}; "
            f"dead letters: {dead}; kills: {kills}"
        ) from None

    def clickhouse_metrics() -> dict[tuple[str, str, int], tuple[int, float]]:
        rows = query(
            stack.api,
            "SELECT field, `group`, toUnixTimestamp64Milli(window_start), "
            "count, sum FROM riverbed.metrics FINAL WHERE stream = 'pageviews'",
        )
        return {(r[0], r[1], int(r[2])): (int(r[3]), round(float(r[4]), 6)) for r in rows}

    rounded = {k: (c, round(s, 6)) for k, (c, s) in want.items()}
    wait_until(
        lambda: clickhouse_metrics() == rounded,
        120,
        interval=0.5,
        message="exact aggregates in ClickHouse",
    )
    declared: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for event in events:
        declared[(event["page"], window_start(event["ts"], WINDOW_MS))].append(event)
    want_declared = {
        key: (
            len(group),
            round(sum(e["load_ms"] for e in group), 6),
            max(e["load_ms"] for e in group),
            len({e["user_id"] for e in group}),
        )
        for key, group in declared.items()
    }

    def declared_results() -> dict[tuple[str, int], tuple[int, float, float, int]]:
        response = stack.api.get("/v1/metrics/crash_pages/results", timeout=30)
        response.raise_for_status()
        return {
            (w["group_key"], w["window_start"]): (
                w["count"],
                round(w["values"]["sum_load_ms"], 6),
                w["values"]["max_load_ms"],
                int(w["values"]["count_distinct_user_id"]),
            )
            for w in response.json()["windows"]
        }

    wait_until(
        lambda: declared_results() == want_declared,
        60,
        interval=0.5,
        message="exact declared-metric windows in ClickHouse",
    )
    dead = query(
        stack.api,
        "SELECT stage, error, extract(assumeNotNull(event_id), '^crash-(\\d+)-') AS batch,"
        " count(), min(failed_at), max(failed_at) FROM riverbed.dead_letters FINAL"
        " WHERE stream = 'pageviews' GROUP BY stage, error, batch ORDER BY batch",
    )
    assert dead == [], f"kills {kills}"  # nothing was dropped as late or refused on the way
