"""The declared metrics' part of the Bytewax flow: items per (metric, group), their stateful
logic, and the encoding of results.

Each clean event becomes one item per live metric of its stream whose filter it passes; the
item carries only what the metric's aggregations read (numbers, hashed distinct values), so
the state never holds whole events.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import bytewax.operators as op

from schemas.expressions import Expression
from streams.metrics.definition import Metric
from streams.metrics.state import MetricWindows
from streams.snapshots import freeze, thaw
from streams.throttle import EmitThrottle
from streams.watermark import RecentlyClosed, Watermark

PROCESSED_AT = "processed_at"


class MetricItem(NamedTuple):
    metric: Metric
    group_key: str
    group: dict[str, str]
    event_time: int
    numbers: dict[str, float]
    hashes: dict[str, int]
    raw: bytes
    event_id: str | None
    event_key: int | None
    source_mark: int | None


MetricOutput = tuple[str, Any]  # ("result", dict) or ("late_metric", MetricItem)


def value_hash(value: Any) -> int:
    """64-bit digest of a distinct-counted value: exact up to a collision chance of ~2^-64 per
    pair, at 8 bytes a value instead of the value itself."""
    return int.from_bytes(hashlib.blake2b(repr(value).encode(), digest_size=8).digest(), "big")


def group_of(metric: Metric, record: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The group's key and values; ``|`` and ``\\`` in values are escaped so keys are unique."""
    fields = metric.group_by
    if not fields:
        return "*", {}
    values = {f: "" if record.get(f) is None else str(record.get(f)) for f in fields}
    key = "|".join(v.replace("\\", "\\\\").replace("|", "\\|") for v in values.values())
    return key, values


def metric_item(
    metric: Metric,
    record: dict[str, Any],
    raw: bytes,
    event_key: int | None,
    source_mark: int | None,
) -> tuple[str, MetricItem]:
    numbers = {f: float(record[f]) for f in metric.numeric_inputs if record.get(f) is not None}
    hashes = {f: value_hash(record[f]) for f in metric.distinct_fields if record.get(f) is not None}
    group_key, group = group_of(metric, record)
    time_field = "event_time" if metric.time_basis == "event" else PROCESSED_AT
    item = MetricItem(
        metric,
        group_key,
        group,
        record[time_field],
        numbers,
        hashes,
        raw,
        record.get("event_id"),
        event_key,
        source_mark,
    )
    return f"m\x1f{metric.name}\x1f{metric.generation}\x1f{group_key}", item


def passes(metric_filter: Expression | None, record: dict[str, Any]) -> bool:
    return metric_filter is None or metric_filter.matches(record)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MetricLogic(op.StatefulLogic[list[MetricItem], MetricOutput, bytes]):
    """Drives one :class:`MetricWindows`; drops it once its metric is deleted or redefined."""

    def __init__(
        self,
        snapshot: MetricWindows | bytes | None,
        is_live: Callable[[str, str], bool],
        emit_interval_ms: int,
        idle_grace_ms: int,
        late_dedup_ms: int = 120_000,
    ) -> None:
        self.state = state = thaw(snapshot)
        self.late_dedup_ms = late_dedup_ms
        self.is_live = is_live
        self.emit_interval_ms = emit_interval_ms
        self.idle_grace_ms = idle_grace_ms
        self.throttle = EmitThrottle(emit_interval_ms)
        if state is not None:
            state.clock.resumed(_now_ms())
            # Windows may have been emitted after the snapshot was taken; if a replayed event
            # now merges one of them into another session, it must be retracted downstream.
            # (Retracting a row that was never written is harmless.)
            state.emitted |= set(state.windows)
            if state.dirty or state.retracted:
                self.throttle.postpone(_now_ms())

    def on_item(self, value: list[MetricItem]) -> tuple[list[MetricOutput], bool]:
        now = _now_ms()
        if self.state is None:
            first = value[0]
            clock = Watermark(first.metric.lateness_ms, self.idle_grace_ms, source_watermarks=True)
            self.state = MetricWindows(
                first.metric,
                first.group_key,
                first.group,
                clock,
                closed_keys=RecentlyClosed(self.late_dedup_ms),
            )
        state = self.state
        state.begin_batch(now)
        out: list[MetricOutput] = []
        for item in value:
            accepted = state.add(
                item.event_time,
                item.numbers,
                item.hashes,
                now,
                item.event_key,
                item.source_mark,
            )
            if not accepted:
                out.append(("late_metric", item))
        if self.throttle.changed(now) and self.is_live(state.metric.name, state.metric.generation):
            self.throttle.emitted(now)
            out += [("result", u) for u in state.flush(now)]
        elif self.throttle.due is None:
            self.throttle.postpone(now)  # a metric being dropped: its notify discards it
        return out, op.StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[MetricOutput], bool]:
        state = self.state
        if state is None or not self.is_live(state.metric.name, state.metric.generation):
            return [], op.StatefulLogic.DISCARD
        now = _now_ms()
        self.throttle.emitted(now)
        return [("result", u) for u in state.flush(now)], op.StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.state is None:
            return None
        candidates = [t for t in (self.throttle.due, self.state.next_close_wall()) if t]
        if not candidates:
            # Nothing open: look again later only to notice a deleted metric.
            candidates = [_now_ms() + 60_000]
        return datetime.fromtimestamp(min(candidates) / 1000, tz=UTC)

    def snapshot(self) -> bytes:
        return freeze(self.state)
