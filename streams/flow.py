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
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import bytewax.operators as op
import redis
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow

from riverbed.heartbeat import start_heartbeat
from riverbed.kafka import ensure_topics, pipeline_topics
from riverbed.settings import Settings
from schemas import codec
from schemas.catalog import (
    METRICS_TOPIC,
    StreamSpec,
    clean_topic,
    dlq_topic,
    load_catalog,
    stream_of_topic,
)
from schemas.codec import CatalogIds, register_catalog
from schemas.registry import SchemaNotFound, SchemaRegistry
from schemas.wire import WireFormatError
from streams.windows import WindowState

ALL_GROUPS = "*"


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
        size_ms: dict[str, int],
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
                value.stream, value.group, self.size_ms[value.stream], self.lateness_ms
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


def decode_batch(
    registry: SchemaRegistry, catalog: dict[str, StreamSpec], messages: list[Any]
) -> list[tuple[str, Item]]:
    """Each clean record becomes one item for the stream total and one for its group."""
    out: list[tuple[str, Item]] = []
    for message in messages:
        if not isinstance(message, KafkaSourceMessage):
            raise RuntimeError(f"Kafka error in the metrics flow: {message}")
        stream = stream_of_topic(message.topic or "")
        spec = catalog[stream]
        try:
            _, record = codec.decode(registry, message.value)
        except (WireFormatError, SchemaNotFound) as exc:
            # clean.* is written only by the agents; an undecodable record is a bug upstream.
            raise RuntimeError(f"undecodable record in {message.topic}: {exc}") from exc
        values = {name: record.get(name) for name in spec.numeric_fields}
        groups = [ALL_GROUPS]
        if spec.group_by is not None:
            value = record.get(spec.group_by)
            groups.append("" if value is None else str(value))
        for group in groups:
            item = Item(
                stream, group, record["event_time"], values, message.value, record.get("event_id")
            )
            out.append((f"{stream}\x1f{group}", item))
    return out


def encode_output(
    registry: SchemaRegistry, ids: CatalogIds, item: tuple[str, Output]
) -> KafkaSinkMessage[bytes | None, bytes]:
    _, (kind, payload) = item
    if kind == "metric":
        key = f"{payload['stream']}|{payload['field']}|{payload['group']}".encode()
        return KafkaSinkMessage(
            key, codec.encode(registry, ids.metrics, payload), topic=METRICS_TOPIC
        )
    late: Item = payload
    dead = {
        "stream": late.stream,
        "stage": "aggregate",
        "error": "late: its window had closed",
        "original": late.raw,
        "event_id": late.event_id,
        "failed_at": _now_ms(),
    }
    value = codec.encode(registry, ids.streams[late.stream].dead_letter, dead)
    return KafkaSinkMessage(None, value, topic=dlq_topic(late.stream))


def build_flow(
    settings: Settings, catalog: dict[str, StreamSpec], registry: SchemaRegistry, ids: CatalogIds
) -> Dataflow:
    brokers = [settings.require_kafka()]
    flow = Dataflow("riverbed_metrics")
    source = KafkaSource(
        brokers,
        [clean_topic(s) for s in catalog],
        add_config={"fetch.wait.max.ms": "50"},
        batch_size=5000,
    )
    messages = op.input("clean", flow, source)
    keyed = op.flat_map_batch("decode", messages, lambda b: decode_batch(registry, catalog, b))
    size_ms = {
        s: (spec.window_seconds or settings.window_seconds) * 1000 for s, spec in catalog.items()
    }
    lateness_ms = settings.allowed_lateness_seconds * 1000
    emit_ms = int(settings.live_emit_interval_seconds * 1000)
    outputs = op.stateful(
        "windows", keyed, lambda resume: WindowLogic(resume, size_ms, lateness_ms, emit_ms)
    )
    encoded = op.map("encode", outputs, lambda item: encode_output(registry, ids, item))
    sink = KafkaSink(brokers, None, add_config={"linger.ms": "5", "enable.idempotence": "true"})
    op.output("out", encoded, sink)
    return flow


def run(settings: Settings) -> None:
    from bytewax._bytewax import cli_main

    catalog = load_catalog(settings.schemas_dir)
    ensure_topics(settings, pipeline_topics(catalog))
    registry = SchemaRegistry(redis.Redis.from_url(settings.require_redis()))
    ids = register_catalog(registry, catalog)
    flow = build_flow(settings, catalog, registry, ids)
    start_heartbeat(settings.require_redis(), "flow")
    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(seconds=1))
