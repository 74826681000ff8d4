"""The Bytewax dataflow: ``clean.*`` -> built-in and declared window metrics -> ``metrics``,
``metric_results`` and late events' dead letters.

Built from a source and a sink (Kafka's in production, Bytewax's testing ones in-process), so
the whole flow runs in a unit of its own. Downstream stores upsert by
(stream, field, group, window_start) keeping the highest version. Events arriving after their
window closed go to ``dlq.{stream}`` with reason ``late`` rather than vanishing.

Exactness under failure: the Kafka source offsets and the window states are snapshotted
together every epoch into a Bytewax recovery store under the data dir, so a killed flow
resumes where its last snapshot was (re-emitting at most one epoch of updates, which replace
their earlier selves downstream); each window remembers which events it counted, so a copy of
an event redelivered by a restarted agent is not counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from riverbed.core.settings import Settings
from riverbed.core.topology import clean_topic
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from streams.flow.builtin import WindowLogic
from streams.flow.decode import (
    SourceProgress,
    decode_batch,
    encode_output,
    is_window_batch,
    partition_counts,
)
from streams.metrics.steps import MetricItem, MetricLogic
from streams.metrics.store import MetricFollower


@dataclass(frozen=True)
class FlowTimings:
    """How windows close and how often running values go out, in milliseconds."""

    window_ms: int  # built-in windows of streams that declare no window_seconds
    lateness_ms: int
    emit_ms: int
    grace_ms: int
    dedup_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FlowTimings:
        return cls(
            window_ms=settings.window_seconds * 1000,
            lateness_ms=settings.allowed_lateness_seconds * 1000,
            emit_ms=int(settings.live_emit_interval_seconds * 1000),
            grace_ms=int(settings.window_idle_grace_seconds * 1000),
            dedup_ms=int(settings.late_dedup_seconds * 1000),
        )


def build_flow(
    registry: SchemaRegistry,
    catalog: StreamCatalog,
    source: Source[Any],
    sink: Sink[KafkaSinkMessage[Any, Any]],
    partitions: dict[str, int],
    timings: FlowTimings,
    follower: MetricFollower | None = None,
) -> Dataflow:
    """clean records from ``source`` -> built-in and declared windows -> records to ``sink``.

    ``partitions`` (topic -> partition count) is what the source's event-time progress waits
    on. The source and sink are Kafka's in production and Bytewax's testing ones in-process.
    """
    flow = Dataflow("riverbed_metrics")
    messages = op.input("clean", flow, source)
    progress = SourceProgress(partitions)
    keyed = op.flat_map_batch(
        "decode", messages, lambda b: decode_batch(registry, catalog, progress, b, follower)
    )
    kinds = op.branch("kinds", keyed, is_window_batch)
    declared_items = cast(Stream[tuple[str, list[MetricItem]]], kinds.falses)

    def size_ms(stream: str) -> int:
        seconds = catalog.get(stream).window_seconds
        return seconds * 1000 if seconds else timings.window_ms

    outputs = op.stateful(
        "windows",
        kinds.trues,
        lambda resume: WindowLogic(
            resume,
            size_ms,
            timings.lateness_ms,
            timings.emit_ms,
            timings.grace_ms,
            timings.dedup_ms,
        ),
    )

    def is_live(name: str, generation: str) -> bool:
        if follower is None:
            return False
        follower.refresh()
        return (name, generation) in follower.live_generations()

    results = op.stateful(
        "declared",
        declared_items,
        lambda resume: MetricLogic(
            resume, is_live, timings.emit_ms, timings.grace_ms, timings.dedup_ms
        ),
    )
    merged = op.merge("outputs", outputs, results)
    encoded = op.map("encode", merged, lambda item: encode_output(registry, catalog, item))
    op.output("out", encoded, sink)
    return flow


def kafka_flow(
    settings: Settings,
    registry: SchemaRegistry,
    catalog: StreamCatalog,
    follower: MetricFollower | None = None,
) -> Dataflow:
    """The production flow: every ``clean.*`` topic in, the broker's topics out."""
    brokers = [settings.require_kafka()]
    topics = [clean_topic(name) for name in catalog.topic_streams()]
    source = KafkaSource(brokers, topics, add_config={"fetch.wait.max.ms": "50"}, batch_size=5000)
    sink = KafkaSink(brokers, None, add_config={"linger.ms": "5", "enable.idempotence": "true"})
    return build_flow(
        registry,
        catalog,
        source,
        sink,
        partition_counts(brokers, topics),
        FlowTimings.from_settings(settings),
        follower,
    )
