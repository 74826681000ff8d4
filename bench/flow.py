"""Throughput of the Bytewax flow against a raw confluent-kafka ceiling, in the same run.

    python -m bench.flow --events 200000

Fills ``clean.pageviews`` with real Avro records (enriched as the agents write them, event
times spread over ``--windows`` one-minute windows), then measures (1) a raw confluent-kafka
consume -> decode -> per-(group, window) count/sum/min/max -> encode -> produce loop, the
ceiling for this machine and broker, and (2) the flow process (``riverbed run flow``) turning
the same records into metric updates. The flow is done when the latest ``*``/``*`` counts of its
windows in ``metrics`` add up to the number of events; its rate is timed by the emission times
stamped on those updates, from its first emission to the one that completes the count. Prints
events/s of both, their ratio and the flow's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from confluent_kafka import Consumer, Producer

from bench.drain import Progress, drain_rate, status_mb
from bench.stack import BenchStack, bench_stack
from bench.workload import fill, now_ms, page_view, produce
from riverbed.core.kafka import consumer_config, producer_config
from riverbed.core.topology import METRICS_TOPIC, clean_topic
from riverbed.supervisor import Supervisor
from schemas import codec
from streams.metrics.state import window_start
from streams.metrics.store import MetricStore
from streams.processing import ProcessingRules, enrich
from streams.windows import COUNT_FIELD

STREAM = "pageviews"
RAW_TOPIC = "bench.raw-metrics"


@dataclass
class Aggregate:
    """One (group, window) of the raw loop: the event count and, per numeric field, its stats."""

    events: int = 0
    fields: dict[str, list[float]] = field(default_factory=dict)  # [count, sum, min, max]


def metric_updates(
    group: str, start: int, size_ms: int, aggregate: Aggregate, version: int
) -> list[dict[str, Any]]:
    """The raw loop's output, in the flow's ``MetricUpdate`` shape so both encode the same."""
    base = {
        "stream": STREAM,
        "group": group,
        "window_start": start,
        "window_end": start + size_ms,
        "final": False,
        "version": version,
    }
    updates = [
        {
            **base,
            "field": COUNT_FIELD,
            "count": aggregate.events,
            "sum": float(aggregate.events),
            "min": None,
            "max": None,
            "avg": None,
        }
    ]
    for name, (count, total, low, high) in aggregate.fields.items():
        updates.append(
            {
                **base,
                "field": name,
                "count": int(count),
                "sum": total,
                "min": low,
                "max": high,
                "avg": total / count,
            }
        )
    return updates


def raw_windows(stack: BenchStack, total: int, emit_interval: float) -> float:
    """The ceiling: one confluent consumer and producer, a dict of aggregates, no framework.

    Like the flow, every event counts for its page and for the stream total ``*``, and changed
    aggregates are emitted every ``emit_interval`` seconds and once more at the end. Unlike
    the flow it neither deduplicates event ids, closes windows, nor snapshots its state.
    """
    settings, registry, catalog = stack.settings, stack.registry, stack.catalog
    spec = catalog.get(STREAM)
    size_ms = (spec.window_seconds or settings.window_seconds) * 1000
    emit_ms = int(emit_interval * 1000)
    numeric = spec.numeric_fields
    assert spec.group_by is not None
    consumer = Consumer(consumer_config(settings, f"raw-{uuid.uuid4().hex}"))
    producer = Producer(producer_config(settings))
    consumer.subscribe([clean_topic(STREAM)])
    aggregates: dict[tuple[str, int], Aggregate] = {}
    dirty: set[tuple[str, int]] = set()

    def emit() -> None:
        version = now_ms()
        for group, start in sorted(dirty):
            for update in metric_updates(group, start, size_ms, aggregates[group, start], version):
                key = f"{STREAM}|{update['field']}|{group}".encode()
                produce(
                    producer, RAW_TOPIC, codec.encode(registry, catalog.metrics_id, update), key
                )
        dirty.clear()
        producer.poll(0)

    seen = 0
    started: float | None = None
    next_emit = 0
    while seen < total:
        batch = consumer.consume(5000, 1.0)
        if not batch:
            continue
        if started is None:
            started, next_emit = time.perf_counter(), now_ms() + emit_ms
        for message in batch:
            if message.error():
                raise SystemExit(f"raw loop: Kafka error {message.error()}")
            _, record = codec.decode(registry, message.value() or b"")
            start = window_start(record["event_time"], size_ms)
            for group in ("*", str(record[spec.group_by])):
                aggregate = aggregates.get((group, start))
                if aggregate is None:
                    aggregate = aggregates[group, start] = Aggregate()
                aggregate.events += 1
                for name in numeric:
                    value = record[name]
                    if value is None:
                        continue
                    stats = aggregate.fields.get(name)
                    if stats is None:
                        aggregate.fields[name] = [1, value, value, value]
                    else:
                        stats[0] += 1
                        stats[1] += value
                        stats[2] = min(stats[2], value)
                        stats[3] = max(stats[3], value)
                dirty.add((group, start))
            seen += 1
        if now_ms() >= next_emit:
            emit()
            next_emit = now_ms() + emit_ms
    emit()
    producer.flush()
    elapsed = time.perf_counter() - (started or 0.0)
    consumer.close()
    counted = sum(a.events for (group, _), a in aggregates.items() if group == "*")
    if counted != total:
        raise SystemExit(f"raw loop counted {counted} events of {total}")
    return total / elapsed


class CountWatcher:
    """Follows ``metrics`` for the flow's latest ``*``/``*`` count of each window of the stream.

    Their sum is the number of events the flow has counted. It is timed by the updates'
    ``version``, the flow's clock when it emitted them: all windows of a group are emitted
    together with one version, so once an update with a newer version arrives the sum is exact
    as of the previous one, however late the updates were read.
    """

    def __init__(self, stack: BenchStack, total: int) -> None:
        self.registry = stack.registry
        self.total = total
        self.consumer = Consumer(consumer_config(stack.settings, f"watch-{uuid.uuid4().hex}"))
        self.consumer.subscribe([METRICS_TOPIC])
        self.windows: dict[int, tuple[int, int]] = {}  # window_start -> (version, count)
        self.version = 0  # of the newest update read
        self.complete = Progress(0, 0.0)  # as of the last emission read in full
        self.updates = 0

    def counted(self) -> int:
        return sum(count for _, count in self.windows.values())

    def progress(self) -> Progress:
        """Read whatever has arrived, without waiting; events counted as of an emission."""
        for message in self.consumer.consume(10_000, 0):
            if message.error():
                raise SystemExit(f"metrics watcher: Kafka error {message.error()}")
            _, update = codec.decode(self.registry, message.value() or b"")
            self.updates += 1
            if (update["stream"], update["group"], update["field"]) != (STREAM, "*", COUNT_FIELD):
                continue
            version, start = update["version"], update["window_start"]
            if version > self.version:
                if self.version:
                    self.complete = Progress(self.counted(), self.version / 1000)
                self.version = version
            if version >= self.windows.get(start, (0, 0))[0]:
                self.windows[start] = (version, update["count"])
        if self.counted() >= self.total:  # no count can grow any more: exact as of now
            return Progress(self.counted(), self.version / 1000)
        return self.complete

    def close(self) -> None:
        self.consumer.close()


@dataclass
class FlowRun:
    events_per_s: float
    peak_rss_mb: float
    metric_updates: int
    windows: int


def bytewax_flow(stack: BenchStack, total: int, emit_interval: float) -> FlowRun:
    """Time ``riverbed run flow`` by the counts it publishes.

    Counts move only when the flow emits, so ``RIVERBED_LIVE_EMIT_INTERVAL_SECONDS`` is lowered
    from its 1 s default: the emission that completes the count then follows the last event
    closely instead of up to a second later. (While a backlog is queued the flow emits only
    every half second or so whatever the interval, so the clock starts some way into the
    drain.) The extra emissions are work the flow would not do by default.
    """
    watcher = CountWatcher(stack, total)
    env = {**stack.env, "RIVERBED_LIVE_EMIT_INTERVAL_SECONDS": str(emit_interval)}
    supervisor = Supervisor(stack.data_dir / "logs", env)
    child = supervisor.add("flow")
    try:
        rate = drain_rate(watcher.progress, total, child)
        assert child.process is not None
        peak = status_mb(child.process.pid, "VmHWM")
        if watcher.counted() != total:
            raise SystemExit(f"the flow counted {watcher.counted()} events of {total}")
        return FlowRun(rate, peak, watcher.updates, len(watcher.windows))
    finally:
        supervisor.stop()
        watcher.close()


def clean_page_views(stack: BenchStack, total: int, windows: int) -> Iterator[dict[str, Any]]:
    """Clean records as the agents write them, event times evenly over ``windows`` windows that
    ended a minute ago: nothing is rejected as future, and as each partition is in event-time
    order and the flow's watermark follows the slowest partition, nothing arrives late."""
    spec = stack.catalog.get(STREAM)
    rules = ProcessingRules(max_future_skew_ms=stack.settings.max_future_skew_seconds * 1000)
    now = now_ms()
    span = windows * (spec.window_seconds or stack.settings.window_seconds) * 1000
    first = now - 60_000 - span
    for i in range(total):
        view = page_view(i, first + i * span // total, now)
        yield enrich(spec, view, now, rules)


# A declared metric as a user would write one: every kind of aggregation, a group-by and a
# filter, so ``--declared N`` measures what each such metric costs the flow.
DECLARED: dict[str, Any] = {
    "stream": STREAM,
    "aggregations": ["count", "sum(load_ms)", "p99(load_ms)", "count_distinct(user_id)"],
    "group_by": ["page"],
    "filter": "load_ms >= 0",
    "window": {"type": "tumbling", "size": "1m"},
}


def declare(stack: BenchStack, count: int) -> None:
    store = MetricStore(
        redis.Redis.from_url(stack.env["REDIS_URL"]),
        stack.catalog.specs,
        stack.settings.allowed_lateness_seconds * 1000,
    )
    for i in range(count):
        store.create({**DECLARED, "name": f"bench_{i}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--windows", type=int, default=10, help="windows the event times span")
    parser.add_argument(
        "--declared",
        type=int,
        default=0,
        help="also run this many declared metrics on the stream (see DECLARED)",
    )
    parser.add_argument(
        "--emit-interval",
        type=float,
        default=0.05,
        help="seconds between emissions of changed windows, in both loops (flow default: 1)",
    )
    args = parser.parse_args(argv)
    with bench_stack("riverbed-bench-flow-", [RAW_TOPIC]) as stack:
        ids = stack.catalog.ids(STREAM)
        records = clean_page_views(stack, args.events, args.windows)
        fill(stack.settings, stack.registry, clean_topic(STREAM), ids.clean, records)
        declare(stack, args.declared)
        raw = raw_windows(stack, args.events, args.emit_interval)
        flow = bytewax_flow(stack, args.events, args.emit_interval)
    result = {
        "events": args.events,
        "windows": flow.windows,
        "emit_interval_s": args.emit_interval,
        "declared_metrics": args.declared,
        "raw_confluent_loop_per_s": round(raw),
        "bytewax_flow_per_s": round(flow.events_per_s),
        "ratio": round(flow.events_per_s / raw, 3),
        "flow_peak_rss_mb": round(flow.peak_rss_mb),
        "flow_metric_updates": flow.metric_updates,
        "machine": f"{os.cpu_count()} cores, python {sys.version.split()[0]}",
    }
    print(json.dumps(result, indent=2))
    print(f"\nraw confluent-kafka loop  {raw:>9.0f} events/s   (ceiling)")
    print(
        f"bytewax flow              {flow.events_per_s:>9.0f} events/s   "
        f"({flow.events_per_s / raw:.1%} of ceiling, peak RSS {flow.peak_rss_mb:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
