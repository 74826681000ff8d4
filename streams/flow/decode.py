"""The flow's edges: clean records in, items for the window operators; outputs back to records.

Decoding resolves each record to its stream's latest clean schema, so the operators see one
shape whatever version wrote it. Outputs become ``metrics``, ``metric_results`` or dead letters
(late events) in the Confluent wire format.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, TypeGuard

from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from confluent_kafka.admin import AdminClient

from riverbed.core.topology import (
    METRIC_RESULTS_TOPIC,
    METRICS_TOPIC,
    dlq_topic,
    stream_of_topic,
)
from schemas import codec, wire
from schemas.registry import SchemaRegistry
from schemas.registry_errors import SchemaNotFound
from schemas.stream_catalog import StreamCatalog
from schemas.system import dead_letter
from schemas.wire import WireFormatError
from streams.flow.builtin import ALL_GROUPS, Item, Output
from streams.metrics.steps import PROCESSED_AT, MetricItem, MetricOutput, metric_item, passes
from streams.metrics.store import MetricFollower

log = logging.getLogger(__name__)


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
