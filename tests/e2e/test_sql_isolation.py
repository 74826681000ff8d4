"""Analysts' heavy queries do not hold up the pipeline: while three of them run for their full
10 s on the analysts' endpoint, events posted one by one still reach ClickHouse within the
documented bound (docs/clickhouse.md, "Isolation"), and ``/readyz`` stays 200 throughout.

The bound is generous on purpose (two cores run the pipeline, the engine and the three
queries); what it catches is the failure this replaced, where one 10 s query delayed every
insert behind it by the query's whole length.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
import uuid

import httpx
import pytest

from control.keys import key_store
from riverbed.core.settings import Settings
from tests.conftest import Pipeline, wait_until
from tests.helpers.keys import new_key

pytestmark = pytest.mark.e2e
VISIBILITY_BOUND_S = 5.0  # docs/clickhouse.md states the same number
# Minutes of hashing on one thread: each query runs until its 10 s limit stops it.
HEAVY = "SELECT sum(sipHash64(number)) FROM numbers(1000000000000)"


def heavy_query(pipeline: Pipeline, key: str, answers: list[httpx.Response]) -> None:
    answers.append(
        httpx.post(
            f"http://127.0.0.1:{pipeline.sql_port}/",
            params={"max_execution_time": "10"},
            content=HEAVY,
            auth=("analyst", key),
            timeout=60,
        )
    )


def test_three_ten_second_queries_leave_ingest_and_readiness_alone(pipeline: Pipeline) -> None:
    keys = key_store(Settings(data_dir=pipeline.data_dir))
    analysts = [new_key(keys, ["query:sql"]) for _ in range(3)]
    answers: list[httpx.Response] = []
    queries = [
        threading.Thread(target=heavy_query, args=(pipeline, key, answers)) for key in analysts
    ]
    readiness: list[int] = []
    stop = threading.Event()

    def watch_readiness() -> None:
        while not stop.is_set():
            readiness.append(httpx.get(f"{pipeline.base_url}/readyz", timeout=5).status_code)
            stop.wait(0.25)

    watcher = threading.Thread(target=watch_readiness)
    marks: list[str] = []
    posted: dict[str, float] = {}
    seen: dict[str, float] = {}
    posting_done = threading.Event()

    def all_seen() -> bool:
        """One poll: note when each waiting event is first seen in ClickHouse."""
        waiting = [m for m in list(marks) if m not in seen]
        if waiting:
            listed = ", ".join(f"'{m}'" for m in waiting)
            rows = pipeline.query(
                "SELECT DISTINCT user_id FROM riverbed.events_pageviews "
                f"WHERE user_id IN ({listed})"
            )
            now = time.monotonic()
            for (user,) in rows:
                seen.setdefault(user, now)
        return posting_done.is_set() and all(m in seen for m in marks)

    def watch_clickhouse() -> None:
        # A missed event fails the assertion on ``seen`` below; this only stops polling.
        with contextlib.suppress(AssertionError):
            wait_until(all_seen, 90, interval=0.05, message="every event in ClickHouse")

    with pipeline.client() as client:
        warm = mark()  # measure the steady state, not the first event's path
        post(client, warm)
        wait_until(
            lambda: (
                pipeline.query(
                    f"SELECT count() FROM riverbed.events_pageviews WHERE user_id = '{warm}'"
                )[0][0]
                == "1"
            ),
            60,
            message="the warm-up event in ClickHouse",
        )
        checker = threading.Thread(target=watch_clickhouse)
        checker.start()
        started = time.monotonic()
        for thread in queries:
            thread.start()
        watcher.start()
        while time.monotonic() - started < 9:  # inside the queries' 10 s
            user = mark()
            posted[user] = time.monotonic()
            post(client, user)
            marks.append(user)
            time.sleep(0.25)  # pacing the load, not waiting for a result
        posting_done.set()
    checker.join(120)
    for thread in queries:
        thread.join(60)
    stop.set()
    watcher.join(10)
    assert [a.status_code for a in answers] == [504, 504, 504], [a.text[:200] for a in answers]
    assert set(seen) == set(marks), "some events never reached ClickHouse"
    delays = sorted(seen[m] - posted[m] for m in marks)
    p99 = delays[math.ceil(0.99 * len(delays)) - 1]
    print(
        f"ingest->ClickHouse under 3 heavy queries: n={len(delays)} "
        f"p50={statistics.median(delays):.2f}s p99={p99:.2f}s max={delays[-1]:.2f}s"
    )
    assert p99 <= VISIBILITY_BOUND_S, delays
    assert readiness and set(readiness) == {200}, readiness


def mark() -> str:
    return f"iso-{uuid.uuid4().hex[:10]}"


def post(client: httpx.Client, user: str) -> None:
    event = {"user_id": user, "page": "/iso", "load_ms": 1.0, "ts": time.time_ns() // 10**6}
    client.post("/v1/streams/pageviews/events", json=event).raise_for_status()
