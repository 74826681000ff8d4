"""The whole dataflow in-process: Bytewax's testing source and sink instead of Kafka.

``build_flow`` takes its source and sink, so the decode step, both window operators and the
encoding run exactly as in production, against a real Redis-backed registry and catalog, but
fed a scripted sequence of clean records. The window closes on event time (the source's
progress), so the expected values are exact.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main

from riverbed.core.topology import METRIC_RESULTS_TOPIC, METRICS_TOPIC, clean_topic, dlq_topic
from schemas import codec
from schemas.catalog import load_catalog
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from streams.flow.dataflow import FlowTimings, build_flow
from streams.metrics.store import MetricFollower, MetricStore
from tests.conftest import Engines

pytestmark = pytest.mark.integration
WINDOW_MS = 10_000
TIMINGS = FlowTimings(window_ms=WINDOW_MS, lateness_ms=0, emit_ms=50, grace_ms=0, dedup_ms=60_000)


@pytest.fixture()
def catalog(engines: Engines) -> StreamCatalog:
    client = redis.Redis.from_url(engines.redis.url.rsplit("/", 1)[0] + "/9")
    client.flushdb()
    catalog = StreamCatalog(client, SchemaRegistry(client))
    catalog.bootstrap(load_catalog())
    return catalog


def clean(catalog: StreamCatalog, page: str, load_ms: float, at: int, offset: int) -> Any:
    record = {
        "user_id": "u1",
        "page": page,
        "referrer": None,
        "country": None,
        "load_ms": load_ms,
        "ts": at,
        "event_id": f"flow-{uuid.uuid4().hex}",
        "ingested_at": at,
        "event_time": at,
        "processed_at": at,
    }
    value = codec.encode(catalog.registry, catalog.ids("pageviews").clean, record)
    return KafkaSourceMessage(
        b"u1", value, topic=clean_topic("pageviews"), partition=0, offset=offset
    )


def decoded(catalog: StreamCatalog, out: list[KafkaSinkMessage[Any, Any]], topic: str) -> list:
    return [codec.decode(catalog.registry, m.value)[1] for m in out if m.topic == topic]


def test_a_window_closes_on_event_time_with_exact_values_and_a_late_event_is_dead_lettered(
    catalog: StreamCatalog,
) -> None:
    start = (time.time_ns() // 1_000_000 // WINDOW_MS - 10) * WINDOW_MS  # a window in the past
    inputs: list[Any] = [
        clean(catalog, "/a", 1.0, start + 1000, 0),
        clean(catalog, "/a", 2.0, start + 2000, 1),
        clean(catalog, "/b", 4.0, start + 3000, 2),
        clean(catalog, "/a", 8.0, start + 2 * WINDOW_MS + 500, 3),  # moves event time on
        TestingSource.PAUSE(timedelta(seconds=1)),  # the operators' timers flush meanwhile
        clean(catalog, "/a", 16.0, start + 4000, 4),  # its window has closed: late
    ]
    out: list[KafkaSinkMessage[Any, Any]] = []
    flow = build_flow(
        catalog.registry,
        catalog,
        TestingSource(inputs),
        TestingSink(out),
        {clean_topic("pageviews"): 1},
        TIMINGS,
    )
    run_main(flow)
    updates = [u for u in decoded(catalog, out, METRICS_TOPIC) if u["window_start"] == start]
    finals = {(u["field"], u["group"]): u for u in updates if u["final"]}
    assert finals[("load_ms", "*")]["count"] == 3
    assert finals[("load_ms", "*")]["sum"] == 7.0
    assert (finals[("load_ms", "/a")]["count"], finals[("load_ms", "/a")]["max"]) == (2, 2.0)
    # "/b" saw no later event of its own: its window is still open, its running value exact.
    assert ("load_ms", "/b") not in finals
    assert [u["sum"] for u in updates if u["group"] == "/b"][-1] == 4.0
    [late] = decoded(catalog, out, dlq_topic("pageviews"))
    assert late["stage"] == "aggregate" and "late" in late["error"]


def test_a_declared_metric_runs_in_the_same_flow_with_its_filter_and_percentile(
    catalog: StreamCatalog,
) -> None:
    store = MetricStore(catalog.redis, catalog.specs, 0)
    store.create(
        {
            "name": "slow_pages",
            "stream": "pageviews",
            "aggregations": ["count", "sum(load_ms)", "p50(load_ms)"],
            "filter": "load_ms >= 2",
            "window": {"type": "tumbling", "size": "10s"},
        }
    )
    follower = MetricFollower(store)
    follower.refresh(force=True)
    start = (time.time_ns() // 1_000_000 // WINDOW_MS - 10) * WINDOW_MS
    inputs: list[Any] = [
        clean(catalog, "/a", 1.0, start + 1000, 0),  # filtered out
        clean(catalog, "/a", 2.0, start + 2000, 1),
        clean(catalog, "/b", 4.0, start + 3000, 2),
        clean(catalog, "/a", 8.0, start + 2 * WINDOW_MS + 500, 3),
        TestingSource.PAUSE(timedelta(seconds=1)),
    ]
    out: list[KafkaSinkMessage[Any, Any]] = []
    flow = build_flow(
        catalog.registry,
        catalog,
        TestingSource(inputs),
        TestingSink(out),
        {clean_topic("pageviews"): 1},
        TIMINGS,
        follower,
    )
    run_main(flow)
    [final] = [
        r
        for r in decoded(catalog, out, METRIC_RESULTS_TOPIC)
        if r["final"] and r["window_start"] == start
    ]
    assert final["metric"] == "slow_pages" and final["count"] == 2
    assert final["values"]["sum_load_ms"] == 6.0
    assert final["values"]["p50_load_ms"] == pytest.approx(2.0, rel=0.02)
