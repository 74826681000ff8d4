"""Declared metrics through the real pipeline: by API and by file, checked against references.

Every test uses products and users of its own, so exact results hold although the pipeline is
shared by the session. The ``purchases`` stream is used by no other pipeline test.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from streams.metrics.aggregations import SKETCH_RELATIVE_ACCURACY
from streams.metrics.state import window_start
from tests.conftest import Pipeline, wait_until
from tests.integration.test_routing_enrichment import post, purchase

pytestmark = pytest.mark.e2e


def running(client: httpx.Client, name: str) -> None:
    """Wait until the flow computes the metric: events posted before that are not counted."""
    wait_until(
        lambda: client.get(f"/v1/metrics/{name}").json().get("running") is True,
        30,
        message=f"the flow to run metric {name}",
    )


def windows(client: httpx.Client, name: str, **params: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/metrics/{name}/results", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["windows"])


def wait_for_windows(
    client: httpx.Client,
    name: str,
    want: Callable[[list[dict[str, Any]]], bool],
    message: str,
    timeout: float = 60,
) -> list[dict[str, Any]]:
    seen: list[list[dict[str, Any]]] = [[]]

    def check() -> bool:
        seen[0] = windows(client, name)
        return want(seen[0])

    try:
        wait_until(check, timeout, interval=0.5, message=message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last results: {seen[0]}") from None
    return seen[0]


def lower_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_a_metric_posted_to_the_api_computes_exact_tumbling_windows(pipeline: Pipeline) -> None:
    tag = uuid.uuid4().hex[:8]
    name = f"api_{tag}"
    products = [f"api-{tag}-a", f"api-{tag}-b"]
    declaration = {
        "name": name,
        "stream": "purchases",
        "aggregations": [
            "count",
            "sum(price)",
            "avg(price)",
            "min(price)",
            "max(price)",
            "p50(price)",
            "p99(price)",
            "count_distinct(user_id)",
        ],
        "group_by": ["product"],
        "filter": f"quantity >= 2 and product in {tuple(products)!r}",
        "window": {"type": "tumbling", "size": "2s"},
        "allowed_lateness": "3s",
    }
    with pipeline.client() as client:
        created = client.post("/v1/metrics", json=declaration)
        assert created.status_code == 201, created.text
        assert created.json()["outputs"][-1] == "count_distinct_user_id"
        running(client, name)
        now = time.time_ns() // 1_000_000
        events = [
            purchase(
                f"u{i % 7}", products[i % 2], float(1 + (i * 37) % 101), 1 + i % 3, now + i * 40
            )
            for i in range(90)
        ]
        post(client, events[:45])
        post(client, events[45:])

        kept = [e for e in events if e["quantity"] >= 2]
        groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for e in kept:
            groups[(e["product"], window_start(e["ts"], 2000))].append(e)

        def complete(rows: list[dict[str, Any]]) -> bool:
            got = {(r["group_key"], r["window_start"]): r for r in rows}
            return set(got) == set(groups) and all(
                got[k]["count"] == len(v) and got[k]["final"] for k, v in groups.items()
            )

        rows = wait_for_windows(client, name, complete, "final windows equal to the reference")
        for row in rows:
            group = groups[(row["group_key"], row["window_start"])]
            prices = [e["price"] for e in group]
            values = row["values"]
            assert row["group"] == {"product": row["group_key"]}
            assert values["count"] == len(group)
            assert values["sum_price"] == pytest.approx(sum(prices))
            assert values["avg_price"] == pytest.approx(sum(prices) / len(prices))
            assert (values["min_price"], values["max_price"]) == (min(prices), max(prices))
            assert values["count_distinct_user_id"] == len({e["user_id"] for e in group})
            for q, key in ((0.5, "p50_price"), (0.99, "p99_price")):
                exact = lower_quantile(prices, q)
                assert abs(values[key] - exact) <= SKETCH_RELATIVE_ACCURACY * exact * 1.0001

        # Redis holds the newest window per group for dashboards.
        latest = client.get(f"/v1/metrics/{name}").json()["latest"]
        newest = max(start for (_, start) in groups)
        assert {latest[p]["window_start"] for p in products} <= {
            s for (p, s) in groups if p in products
        }
        assert any(latest[p]["window_start"] == newest for p in products)

        # Late is for the data to say, not the idle clock that closed these windows: move the
        # stream's event time on (on every partition: many users; the flow has read them all
        # once the built-in count of their group says so), then an event for the first window
        # is late and dead-lettered, naming the metric.
        pusher = f"api-{tag}-push"
        ahead = max(time.time_ns() // 1_000_000, events[-1]["ts"] + 5000)
        post(client, [purchase(f"u-push-{i}", pusher, 1.0, 1, ahead) for i in range(40)])

        def pushed() -> bool:
            latest = client.get("/v1/streams/purchases/metrics").json()["latest"]
            return latest.get(f"*|{pusher}", {}).get("count") == 40

        wait_until(pushed, 60, message="the flow to read the events that move time on")
        late = purchase("u-late", products[0], 5.0, 2, events[0]["ts"])
        post(client, [late])
        # (The built-in windows write a letter for it too; both are kept, one per stage.)
        sql = f"SELECT error FROM riverbed.dead_letters FINAL WHERE event_id = '{late['event_id']}'"

        def metric_letter() -> bool:
            rows = client.post("/v1/query", json={"sql": sql}).json()["rows"]
            return any(f"metric {name}" in row[0] for row in rows)

        wait_until(metric_letter, 60, message="a dead letter naming the metric")
        assert complete(windows(client, name))  # and the closed window did not move

        # Deleting stops it; a second delete is a 404.
        assert client.delete(f"/v1/metrics/{name}").status_code == 204
        assert client.delete(f"/v1/metrics/{name}").status_code == 404


def test_bad_declarations_get_problem_details_with_paths(pipeline: Pipeline) -> None:
    def declare(**fields: Any) -> httpx.Response:
        declaration = {
            "name": "broken",
            "stream": "purchases",
            "aggregations": ["sum(product)"],
            "window": {"type": "tumbling", "size": "1m"},
            **fields,
        }
        return client.post("/v1/metrics", json=declaration)

    with pipeline.client() as client:
        response = declare(window={"type": "session"})
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert [e["path"] for e in response.json()["errors"]] == ["/window"]
        response = declare()
        assert response.status_code == 422
        assert response.json()["errors"] == [
            {"path": "/aggregations/0", "message": "sum needs a numeric field"}
        ]
        taken = declare(name="pageviews", aggregations=["count"])
        assert taken.status_code == 409


def write_metrics_file(pipeline: Pipeline, metrics: list[dict[str, Any]]) -> None:
    path = pipeline.data_dir / "metrics.yaml"
    path.write_text(yaml.safe_dump({"metrics": metrics}, sort_keys=False))


def test_metrics_declared_in_the_file_compute_hopping_and_session_windows(
    pipeline: Pipeline,
) -> None:
    tag = uuid.uuid4().hex[:8]
    hopping, sessions = f"hop_{tag}", f"ses_{tag}"
    product = f"file-{tag}"
    user = f"user-{tag}"
    write_metrics_file(
        pipeline,
        [
            {
                "name": hopping,
                "stream": "purchases",
                "aggregations": ["count", "sum(quantity)"],
                "filter": f"product == {product!r}",
                "window": {"type": "hopping", "size": "4s", "step": "2s"},
                "allowed_lateness": "30s",
            },
            {
                "name": sessions,
                "stream": "purchases",
                "aggregations": ["count", "max(price)"],
                "group_by": ["user_id"],
                "filter": f"user_id == {user!r}",
                "window": {"type": "session", "gap": "2s"},
                "allowed_lateness": "30s",
            },
        ],
    )
    with pipeline.client() as client:
        wait_until(
            lambda: (
                {hopping, sessions}
                <= {m["name"] for m in client.get("/v1/metrics").json()["metrics"]}
            ),
            30,
            message="the file's metrics to be stored",
        )
        listed = {m["name"]: m for m in client.get("/v1/metrics").json()["metrics"]}
        assert listed[hopping]["source"] == "file"
        assert client.delete(f"/v1/metrics/{hopping}").status_code == 409  # the file owns it
        running(client, hopping)
        running(client, sessions)

        now = time.time_ns() // 1_000_000
        events = [purchase(f"x{i}", product, 1.0, 1 + i % 4, now + i * 150) for i in range(40)]
        # Two sessions of one user, then an event between them that joins them into one.
        first, second = purchase(user, "s", 3.0, 1, now), purchase(user, "s", 9.0, 1, now + 3000)
        post(client, [*events, first, second])

        want: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
        for e in events:
            last = window_start(e["ts"], 2000)
            for start in (last, last - 2000):
                count, total = want[start]
                want[start] = (count + 1, total + e["quantity"])

        def hopping_exact(rows: list[dict[str, Any]]) -> bool:
            got = {r["window_start"]: (r["count"], r["values"]["sum_quantity"]) for r in rows}
            return got == {s: (c, float(t)) for s, (c, t) in want.items()}

        wait_for_windows(client, hopping, hopping_exact, "exact hopping windows")

        def spans(rows: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
            return [(r["window_start"], r["window_end"], r["count"]) for r in rows]

        wait_for_windows(
            client,
            sessions,
            lambda rows: spans(rows) == [(now, now + 2000, 1), (now + 3000, now + 5000, 1)],
            "two separate sessions",
        )
        post(client, [purchase(user, "s", 5.0, 1, now + 1500)])
        rows = wait_for_windows(
            client,
            sessions,
            lambda rows: spans(rows) == [(now, now + 5000, 3)],
            "the bridging event to merge the sessions (and retract the later one)",
        )
        assert rows[0]["values"]["max_price"] == 9.0
        assert client.get(f"/v1/metrics/{sessions}").json()["latest"][user]["count"] == 3

    # A broken file is reported, and what was applied stays.
    write_metrics_file(pipeline, [{"name": hopping, "stream": "nope"}])
    with pipeline.client() as client:
        body = wait_until(
            lambda: (b := client.get("/v1/metrics").json())["file_errors"] and b,
            30,
            message="the broken file to be reported",
        )
        assert any(e["path"].startswith("/metrics/0/") for e in body["file_errors"])
        assert hopping in {m["name"] for m in body["metrics"]}
    write_metrics_file(pipeline, [])
