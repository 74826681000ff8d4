"""The flow's operator for a stream's built-in metrics: tumbling windows per group.

Every clean event updates two groups: its ``group_by`` value and the stream-wide total ``*``.
Running values of an open window go out when it changes: at once after a quiet interval, else
coalesced to the end of ``live_emit_interval_seconds`` (:mod:`streams.throttle`); the final
value once the watermark passes the window end. The window engine is the declared metrics'
(``streams.metrics.state``), on a generated declaration (``streams.windows``); this drives
one :class:`WindowState` per (stream, group) key inside Bytewax.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import bytewax.operators as op

from streams.snapshots import freeze, thaw
from streams.throttle import EmitThrottle
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


class WindowLogic(op.StatefulLogic[list[Item], Output, bytes]):
    """Drives one :class:`WindowState`: folds events, flushes on a timer, releases when idle.

    Bytewax hands the builder only the resume state, not the key, so a fresh state is created
    from the first item (which carries its stream and group).
    """

    def __init__(
        self,
        snapshot: WindowState | bytes | None,
        size_ms: Callable[[str], int],
        lateness_ms: int,
        emit_interval_ms: int,
        idle_grace_ms: int = 0,
        late_dedup_ms: int = 120_000,
    ) -> None:
        self.state = state = thaw(snapshot)
        self.late_dedup_ms = late_dedup_ms
        if state is not None:
            state.resumed(_now_ms())
        self.size_ms = size_ms
        self.lateness_ms = lateness_ms
        self.emit_interval_ms = emit_interval_ms
        self.idle_grace_ms = idle_grace_ms
        self.throttle = EmitThrottle(emit_interval_ms)
        if state is not None and state.dirty:
            # Updates emitted after the snapshot may not have reached Kafka before the crash.
            self.throttle.postpone(_now_ms())

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
        state.begin_batch(now)
        out: list[Output] = []
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
                    out.append(("late", item))
        if self.throttle.changed(now):
            self.throttle.emitted(now)
            out += [("metric", u) for u in state.flush(now)]
        return out, op.StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[Output], bool]:
        if self.state is None:
            return [], op.StatefulLogic.DISCARD
        now = _now_ms()
        updates: list[Output] = [("metric", u) for u in self.state.flush(now)]
        self.throttle.emitted(now)
        # Retained even with no open window: a fresh state would know no watermark and let a
        # late event reopen (and overwrite) a window that closed.
        return updates, op.StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.state is None:
            return None
        candidates = [t for t in (self.throttle.due, self.state.next_close_wall()) if t is not None]
        if not candidates:
            return None
        return datetime.fromtimestamp(min(candidates) / 1000, tz=UTC)

    def snapshot(self) -> bytes:
        return freeze(self.state)
