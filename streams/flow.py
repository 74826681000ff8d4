"""The Bytewax dataflow: ``clean.*`` -> tumbling-window aggregates -> ``metrics``.

Every clean event updates two groups: its ``group_by`` value and the stream-wide total ``*``.
Running values of open windows are emitted every ``live_emit_interval_seconds`` and the final
value once the watermark passes the window end; downstream stores upsert by
(stream, field, group, window_start) keeping the highest version. Events arriving after their
window closed go to ``dlq.{stream}`` with reason ``late`` rather than vanishing.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from confluent_kafka import Consumer

from riverbed.heartbeat import start_heartbeat
from riverbed.settings import Settings
from riverbed.wiring import join_catalog
from schemas import codec, wire
from schemas.catalog import METRICS_TOPIC, dlq_topic, stream_of_topic
from schemas.registry import SchemaNotFound, SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from schemas.wire import WireFormatError
from streams.windows import WindowState

ALL_GROUPS = "*"
CLEAN_PATTERN = r"^clean\..+"


class Item(NamedTuple):
    stream: str
    group: str
    event_time: int
    values: dict[str, float | None]
    raw: bytes
    event_id: str | None


Output = tuple[str, Any]  # ("metric", update dict) or ("late", Item)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class WindowLogic(op.StatefulLogic[Item, Output, WindowState]):
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
    ) -> None:
        self.state = state
        self.size_ms = size_ms
        self.lateness_ms = lateness_ms
        self.emit_interval_ms = emit_interval_ms
        self.next_flush: int | None = None

    def on_item(self, value: Item) -> tuple[list[Output], bool]:
        now = _now_ms()
        if self.state is None:
            self.state = WindowState(
                value.stream, value.group, self.size_ms(value.stream), self.lateness_ms
            )
        if not self.state.add(value.event_time, value.values, now):
            return [("late", value)], op.StatefulLogic.RETAIN
        if self.next_flush is None:
            self.next_flush = now + self.emit_interval_ms
        return [], op.StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[Output], bool]:
        if self.state is None:
            return [], op.StatefulLogic.DISCARD
        updates: list[Output] = [("metric", u) for u in self.state.flush(_now_ms())]
        self.next_flush = None
        return updates, not self.state.windows

    def notify_at(self) -> datetime | None:
        if self.state is None:
            return None
        candidates = [t for t in (self.next_flush, self.state.next_close_wall()) if t is not None]
        if not candidates:
            return None
        return datetime.fromtimestamp(min(candidates) / 1000, tz=UTC)

    def snapshot(self) -> WindowState:
        return copy.deepcopy(self.state)  # type: ignore[return-value]


class _CleanTopicsPartition(StatelessSourcePartition[tuple[str, bytes]]):
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.consumer = Consumer(config)
        # A regex subscription: streams created at run time are picked up on metadata refresh.
        self.consumer.subscribe([CLEAN_PATTERN])
        self.batch_size = batch_size

    def next_batch(self) -> list[tuple[str, bytes]]:
        batch = []
        for message in self.consumer.consume(self.batch_size, 0.05):
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise RuntimeError(f"Kafka error in the metrics flow: {error}")
                continue
            batch.append((message.topic() or "", message.value() or b""))
        return batch

    def close(self) -> None:
        self.consumer.close()


class CleanTopicsSource(DynamicSource[tuple[str, bytes]]):
    """Every ``clean.*`` topic, present and future, from the beginning.

    There is no recovery store yet, so a (re)started flow rebuilds its windows by re-reading
    the topics; workers of one process share the partitions through a per-run group id.
    """

    def __init__(self, bootstrap: str, batch_size: int = 5000) -> None:
        self.config = {
            "bootstrap.servers": bootstrap,
            "group.id": f"riverbed-flow-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            "topic.metadata.refresh.interval.ms": 2000,
            "session.timeout.ms": 6000,
        }
        self.batch_size = batch_size

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CleanTopicsPartition:
        return _CleanTopicsPartition(self.config, self.batch_size)


def decode_batch(
    registry: SchemaRegistry, catalog: StreamCatalog, messages: list[tuple[str, bytes]]
) -> list[tuple[str, Item]]:
    """Each clean record becomes one item for the stream total and one for its group."""
    out: list[tuple[str, Item]] = []
    for topic, raw in messages:
        stream = stream_of_topic(topic)
        spec = catalog.get(stream)
        try:
            reader = catalog.reader_ids(stream, wire.split(raw)[0]).clean
            spec = catalog.get(stream)
            _, record = codec.decode(registry, raw, reader_id=reader)
        except (WireFormatError, SchemaNotFound) as exc:
            # clean.* is written only by the agents; an undecodable record is a bug upstream.
            raise RuntimeError(f"undecodable record in {topic}: {exc}") from exc
        values = {name: record.get(name) for name in spec.numeric_fields}
        groups = [ALL_GROUPS]
        if spec.group_by is not None:
            value = record.get(spec.group_by)
            groups.append("" if value is None else str(value))
        for group in groups:
            item = Item(stream, group, record["event_time"], values, raw, record.get("event_id"))
            out.append((f"{stream}\x1f{group}", item))
    return out


def encode_output(
    registry: SchemaRegistry, catalog: StreamCatalog, item: tuple[str, Output]
) -> KafkaSinkMessage[bytes | None, bytes]:
    _, (kind, payload) = item
    if kind == "metric":
        key = f"{payload['stream']}|{payload['field']}|{payload['group']}".encode()
        value = codec.encode(registry, catalog.metrics_id, payload)
        return KafkaSinkMessage(key, value, topic=METRICS_TOPIC)
    late: Item = payload
    dead = {
        "stream": late.stream,
        "stage": "aggregate",
        "error": "late: its window had closed",
        "original": late.raw,
        "event_id": late.event_id,
        "failed_at": _now_ms(),
    }
    value = codec.encode(registry, catalog.ids(late.stream).dead_letter, dead)
    return KafkaSinkMessage(None, value, topic=dlq_topic(late.stream))


def build_flow(settings: Settings, registry: SchemaRegistry, catalog: StreamCatalog) -> Dataflow:
    flow = Dataflow("riverbed_metrics")
    messages = op.input("clean", flow, CleanTopicsSource(settings.require_kafka()))
    keyed = op.flat_map_batch("decode", messages, lambda b: decode_batch(registry, catalog, b))

    def size_ms(stream: str) -> int:
        return (catalog.get(stream).window_seconds or settings.window_seconds) * 1000

    lateness_ms = settings.allowed_lateness_seconds * 1000
    emit_ms = int(settings.live_emit_interval_seconds * 1000)
    outputs = op.stateful(
        "windows", keyed, lambda resume: WindowLogic(resume, size_ms, lateness_ms, emit_ms)
    )
    encoded = op.map("encode", outputs, lambda item: encode_output(registry, catalog, item))
    sink = KafkaSink(
        [settings.require_kafka()],
        None,
        add_config={"linger.ms": "5", "enable.idempotence": "true"},
    )
    op.output("out", encoded, sink)
    return flow


def run(settings: Settings) -> None:
    from bytewax._bytewax import cli_main

    registry, catalog = join_catalog(settings)
    flow = build_flow(settings, registry, catalog)
    start_heartbeat(settings.require_redis(), "flow")
    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(seconds=1))
