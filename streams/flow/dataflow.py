"""The Bytewax dataflow: ``clean.*`` -> tumbling-window aggregates -> ``metrics``.

Every clean event updates two groups: its ``group_by`` value and the stream-wide total ``*``.
Running values of open windows are emitted every ``live_emit_interval_seconds`` and the final
value once the watermark passes the window end; downstream stores upsert by
(stream, field, group, window_start) keeping the highest version. Events arriving after their
window closed go to ``dlq.{stream}`` with reason ``late`` rather than vanishing.

Exactness under failure: the Kafka source offsets and the window states are snapshotted
together every epoch into a Bytewax recovery store under the data dir, so a killed flow
resumes where its last snapshot was (re-emitting at most one epoch of updates, which replace
their earlier selves downstream); each window remembers which events it counted, so a copy of
an event redelivered by a restarted agent is not counted twice.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeGuard, cast

import bytewax.operators as op
import redis
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.recovery import RecoveryConfig, init_db_dir
from confluent_kafka.admin import AdminClient

from riverbed.core.heartbeat import start_heartbeat
from riverbed.core.lifecycle import EXIT_RESTART
from riverbed.core.settings import Settings
from riverbed.core.topology import (
    METRIC_RESULTS_TOPIC,
    METRICS_TOPIC,
    clean_topic,
    dlq_topic,
    stream_of_topic,
)
from schemas import codec, wire
from schemas.bootstrap import join_catalog
from schemas.registry import SchemaNotFound, SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from schemas.system import dead_letter
from schemas.wire import WireFormatError
from streams.metrics.steps import (
    PROCESSED_AT,
    MetricItem,
    MetricLogic,
    MetricOutput,
    metric_item,
    passes,
)
from streams.metrics.store import MetricFollower, MetricStore
from streams.windows import WindowState

log = logging.getLogger(__name__)
ALL_GROUPS = "*"


class Item(NamedTuple):
    stream: str
    group: str
    event_time: int
    values: dict[str, float | None]
    raw: bytes
    event_id: str | None
    event_key: int | None  # 64-bit hash of event_id: what windows deduplicate on
    source_mark: int | None  # event-time progress of the source across all partitions


Output = tuple[str, Any]  # ("metric", update dict) or ("late", Item)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class WindowLogic(op.StatefulLogic[list[Item], Output, WindowState]):
    """Drives one :class:`WindowState`: folds events, flushes on a timer, releases when idle.

    Bytewax hands the builder only the resume state, not the key, so a fresh state is created
    from the first item (which carries its stream and group).
    """

    def __init__(
        self,
        state: WindowState | None,
        size_ms: Callable[[str], int],
        lateness_ms: int,
        emit_interval_ms: int,
        idle_grace_ms: int = 0,
        late_dedup_ms: int = 120_000,
    ) -> None:
        self.state = state
        self.late_dedup_ms = late_dedup_ms
        if state is not None:
            state.resumed(_now_ms())
        self.size_ms = size_ms
        self.lateness_ms = lateness_ms
        self.emit_interval_ms = emit_interval_ms
        self.idle_grace_ms = idle_grace_ms
        self.next_flush: int | None = None
        if state is not None and state.dirty:
            # Updates emitted after the snapshot may not have reached Kafka before the crash.
            self.next_flush = _now_ms() + emit_interval_ms

    def on_item(self, value: list[Item]) -> tuple[list[Output], bool]:
        now = _now_ms()
        if self.state is None:
            first = value[0]
            self.state = WindowState(
                first.stream,
                first.group,
                self.size_ms(first.stream),
                self.lateness_ms,
                idle_grace_ms=self.idle_grace_ms,
                source_watermarks=True,
                late_dedup_ms=self.late_dedup_ms,
            )
        state = self.state
        late: list[Output] = []
        for item in value:
            if not state.add(item.event_time, item.values, now, item.event_key, item.source_mark):
                log.debug(
                    "late %s %s@%s: watermark %s (source %s, item %s), max event time %s",
                    item.event_id,
                    item.group,
                    item.event_time,
                    state.watermark(now),
                    state.source_mark,
                    item.source_mark,
                    state.max_event_time,
                )
                # The stream-wide group speaks for the event: one dead letter per late event.
                if item.group == ALL_GROUPS:
                    late.append(("late", item))
        if self.next_flush is None:
            self.next_flush = now + self.emit_interval_ms
        return late, op.StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[Output], bool]:
        if self.state is None:
            return [], op.StatefulLogic.DISCARD
        updates: list[Output] = [("metric", u) for u in self.state.flush(_now_ms())]
        self.next_flush = None
        # Retained even with no open window: a fresh state would know no watermark and let a
        # late event reopen (and overwrite) a window that closed.
        return updates, op.StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.state is None:
            return None
        candidates = [t for t in (self.next_flush, self.state.next_close_wall()) if t is not None]
        if not candidates:
            return None
        return datetime.fromtimestamp(min(candidates) / 1000, tz=UTC)

    def snapshot(self) -> WindowState:
        return copy.deepcopy(self.state)  # type: ignore[return-value]


class SourceProgress:
    """Per-topic event-time progress of the source: the minimum over all partitions of the
    newest event time read from each, unknown until every partition has delivered.

    Shared by the flow's workers (threads of one process; each reads some of the partitions);
    not snapshotted, so after a restart it starts unknown again, which only delays closing
    windows. Flow workers in several processes would each see only their own partitions, which
    is why the flow scales with ``RIVERBED_FLOW_WORKERS`` (threads) and runs as one process.
    """

    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions
        self.newest: dict[str, dict[int, int]] = {}

    def observe(
        self, topic: str, partition: int, event_time: int, series: str | None = None
    ) -> int | None:
        """``series`` tracks another clock of the same topic (e.g. processing time)."""
        seen = self.newest.setdefault(series or topic, {})
        if event_time > seen.get(partition, event_time - 1):
            seen[partition] = event_time
        if len(seen) < self.partitions.get(topic, 1):
            return None
        return min(seen.values())


def partition_counts(brokers: list[str], topics: list[str]) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": ",".join(brokers)}).list_topics(timeout=10)
    return {t: len(metadata.topics[t].partitions) for t in topics if t in metadata.topics}


def event_key(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


def decode_batch(
    registry: SchemaRegistry,
    catalog: StreamCatalog,
    progress: SourceProgress,
    messages: list[Any],
    follower: MetricFollower | None = None,
) -> list[tuple[str, list[Item] | list[MetricItem]]]:
    """Each clean record becomes one item for the stream total, one for its group, and one
    for each declared metric of its stream whose filter it passes."""
    out: dict[str, list[Any]] = {}
    declared = follower.refresh() if follower is not None else {}
    for message in messages:
        if not isinstance(message, KafkaSourceMessage):
            raise RuntimeError(f"Kafka error in the metrics flow: {message}")
        topic, raw = message.topic or "", message.value or b""
        stream = stream_of_topic(topic)
        try:
            reader = catalog.reader_ids(stream, wire.split(raw)[0]).clean
            spec = catalog.get(stream)
            _, record = codec.decode(registry, raw, reader_id=reader)
        except (WireFormatError, SchemaNotFound) as exc:
            # clean.* is written only by the agents; an undecodable record is a bug upstream.
            raise RuntimeError(f"undecodable record in {topic}: {exc}") from exc
        values = {name: record.get(name) for name in spec.numeric_fields}
        event_id = record.get("event_id")
        key = event_key(event_id) if event_id else None
        mark = progress.observe(topic, message.partition or 0, record["event_time"])
        if mark is not None and record["event_time"] < mark - 1000:
            log.debug(
                "behind the source: %s/%s@%s %s ts %s; progress %s",
                topic,
                message.partition,
                message.offset,
                record.get("event_id"),
                record["event_time"],
                progress.newest.get(topic),
            )
        groups = [ALL_GROUPS]
        if spec.group_by is not None:
            value = record.get(spec.group_by)
            groups.append("" if value is None else str(value))
        for group in groups:
            item = Item(stream, group, record["event_time"], values, raw, event_id, key, mark)
            out.setdefault(f"{stream}\x1f{group}", []).append(item)
        metrics = declared.get(stream, ())
        if metrics and any(m.time_basis == "processing" for m, _ in metrics):
            processing_mark = progress.observe(
                topic, message.partition or 0, record[PROCESSED_AT], f"{topic}#processing"
            )
        for metric, metric_filter in metrics:
            if passes(metric_filter, record):
                at = mark if metric.time_basis == "event" else processing_mark
                metric_key, declared_item = metric_item(metric, record, raw, key, at)
                out.setdefault(metric_key, []).append(declared_item)
    # One item per key and batch, in read order: Bytewax's per-item routing and state lookup
    # then cost once per key, not once per event and group (or metric).
    return list(out.items())


def is_window_batch(
    kv: tuple[str, list[Item] | list[MetricItem]],
) -> TypeGuard[tuple[str, list[Item]]]:
    return isinstance(kv[1][0], Item)


def encode_output(
    registry: SchemaRegistry, catalog: StreamCatalog, item: tuple[str, Output | MetricOutput]
) -> KafkaSinkMessage[bytes | None, bytes]:
    _, (kind, payload) = item
    if kind == "result":
        key = f"{payload['metric']}|{payload['group_key']}".encode()
        value = codec.encode(registry, catalog.results_id, payload)
        return KafkaSinkMessage(key, value, topic=METRIC_RESULTS_TOPIC)
    if kind == "late_metric":
        item_: MetricItem = payload
        dead = dead_letter(
            item_.metric.stream,
            "aggregate",
            f"late: its window of metric {item_.metric.name} had closed",
            item_.raw,
            item_.event_id,
        )
        value = codec.encode(registry, catalog.ids(item_.metric.stream).dead_letter, dead)
        return KafkaSinkMessage(None, value, topic=dlq_topic(item_.metric.stream))
    if kind == "metric":
        key = f"{payload['stream']}|{payload['field']}|{payload['group']}".encode()
        value = codec.encode(registry, catalog.metrics_id, payload)
        return KafkaSinkMessage(key, value, topic=METRICS_TOPIC)
    late: Item = payload
    dead = dead_letter(
        late.stream, "aggregate", "late: its window had closed", late.raw, late.event_id
    )
    value = codec.encode(registry, catalog.ids(late.stream).dead_letter, dead)
    return KafkaSinkMessage(None, value, topic=dlq_topic(late.stream))


def build_flow(
    settings: Settings,
    registry: SchemaRegistry,
    catalog: StreamCatalog,
    follower: MetricFollower | None = None,
) -> Dataflow:
    brokers = [settings.require_kafka()]
    flow = Dataflow("riverbed_metrics")
    topics = [clean_topic(name) for name in catalog.names()]
    source = KafkaSource(
        brokers,
        topics,
        add_config={"fetch.wait.max.ms": "50"},
        batch_size=5000,
    )
    messages = op.input("clean", flow, source)
    progress = SourceProgress(partition_counts(brokers, topics))
    keyed = op.flat_map_batch(
        "decode", messages, lambda b: decode_batch(registry, catalog, progress, b, follower)
    )
    kinds = op.branch("kinds", keyed, is_window_batch)
    declared_items = cast(Stream[tuple[str, list[MetricItem]]], kinds.falses)

    def size_ms(stream: str) -> int:
        return (catalog.get(stream).window_seconds or settings.window_seconds) * 1000

    lateness_ms = settings.allowed_lateness_seconds * 1000
    emit_ms = int(settings.live_emit_interval_seconds * 1000)
    grace_ms = int(settings.window_idle_grace_seconds * 1000)
    dedup_ms = int(settings.late_dedup_seconds * 1000)
    outputs = op.stateful(
        "windows",
        kinds.trues,
        lambda resume: WindowLogic(resume, size_ms, lateness_ms, emit_ms, grace_ms, dedup_ms),
    )

    def is_live(name: str, generation: str) -> bool:
        if follower is None:
            return False
        follower.refresh()
        return (name, generation) in follower.live_generations()

    results = op.stateful(
        "declared",
        declared_items,
        lambda resume: MetricLogic(resume, is_live, emit_ms, grace_ms, dedup_ms),
    )
    merged = op.merge("outputs", outputs, results)
    encoded = op.map("encode", merged, lambda item: encode_output(registry, catalog, item))
    sink = KafkaSink(brokers, None, add_config={"linger.ms": "5", "enable.idempotence": "true"})
    op.output("out", encoded, sink)
    return flow


def recovery_config(settings: Settings) -> RecoveryConfig:
    """The store of snapshots; created (one partition per worker process) on first use."""
    directory = settings.flow_recovery_dir
    if not directory.exists() or not any(directory.iterdir()):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)
    return RecoveryConfig(directory)


def watch_for_new_streams(catalog: StreamCatalog, interval: float = 2.0) -> None:
    """The Kafka source's partitions are fixed at start, so a new stream needs a restart:
    exit with ``EXIT_RESTART`` (the recovery store carries the state across)."""
    known = set(catalog.names())

    def watch() -> None:
        while True:
            time.sleep(interval)
            added = set(catalog.names()) - known
            if added:
                log.warning("new streams %s: restarting the flow to read them", sorted(added))
                os._exit(EXIT_RESTART)

    threading.Thread(target=watch, name="catalog-watch", daemon=True).start()


def follow_metrics(follower: MetricFollower, interval: float = 1.0) -> None:
    """Pick up declared metrics while no events arrive too (the decode step refreshes only when
    it has a batch), so ``running`` turns true before the first event is posted."""

    def follow() -> None:
        while True:
            time.sleep(interval)
            try:
                follower.refresh()
            except redis.RedisError as exc:
                log.warning("cannot refresh declared metrics: %s", exc)

    threading.Thread(target=follow, name="metrics-follow", daemon=True).start()


def run(settings: Settings) -> None:
    from bytewax._bytewax import cli_main

    registry, catalog = join_catalog(settings)
    store = MetricStore(
        redis.Redis.from_url(settings.require_redis()),
        catalog.specs,
        settings.allowed_lateness_seconds * 1000,
    )
    follower = MetricFollower(store)
    follower.refresh(force=True)
    flow = build_flow(settings, registry, catalog, follower)
    start_heartbeat(settings.require_redis(), "flow")
    watch_for_new_streams(catalog)
    follow_metrics(follower)
    cli_main(
        flow,
        workers_per_process=settings.flow_workers,
        epoch_interval=timedelta(seconds=settings.flow_snapshot_seconds),
        recovery_config=recovery_config(settings),
    )
