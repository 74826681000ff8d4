"""Tumbling event-time windows with live running values, as plain data structures.

One :class:`WindowState` holds the open windows of one (stream, group). Event time drives which
window an event lands in; the watermark is ``max event time seen - allowed lateness`` and keeps
advancing with wall-clock time while no events arrive, so idle groups still close their windows.
Open windows are flushed as running values every emit interval, so dashboards move within
seconds, and once more with ``final=True`` when the watermark passes their end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from streams.watermark import RecentlyClosed, Watermark

COUNT_FIELD = "*"


def window_start(event_time_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding ``event_time_ms`` (floor, also for negative times)."""
    return event_time_ms - (event_time_ms % size_ms)


@dataclass
class FieldStats:
    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value


@dataclass
class Window:
    events: int = 0
    fields: dict[str, FieldStats] = field(default_factory=dict)
    # Keys (64-bit hashes of event ids) already counted: a redelivered copy of an event (an
    # agent that crashed between producing and committing) must not count twice.
    seen: set[int] = field(default_factory=set)


@dataclass
class WindowState:
    """Open windows of one group; picklable so Bytewax can snapshot it."""

    stream: str
    group: str
    size_ms: int
    lateness_ms: int
    windows: dict[int, Window] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)
    last_version: int = 0
    idle_grace_ms: int = 0
    source_watermarks: bool = False
    late_dedup_ms: int = 120_000
    clock: Watermark = field(init=False)
    closed_keys: RecentlyClosed = field(init=False)

    def __post_init__(self) -> None:
        self.clock = Watermark(self.lateness_ms, self.idle_grace_ms, self.source_watermarks)
        self.closed_keys = RecentlyClosed(self.late_dedup_ms)

    @property
    def max_event_time(self) -> int | None:
        return self.clock.max_event_time

    @property
    def source_mark(self) -> int | None:
        return self.clock.source_mark

    def watermark(self, now_ms: int) -> int | None:
        return self.clock.current(now_ms)

    def resumed(self, now_ms: int) -> None:
        self.clock.resumed(now_ms)

    def add(
        self,
        event_time: int,
        values: dict[str, float | None],
        now_ms: int,
        event_key: int | None = None,
        source_mark: int | None = None,
    ) -> bool:
        """Fold one event in; False when its window has already closed (a late event).

        An ``event_key`` already counted in its window is ignored (True, nothing changes), also
        shortly after the window closed. ``source_mark`` is the source's event-time progress
        when it read this event.
        """
        self.clock.see_source(source_mark)
        start = window_start(event_time, self.size_ms)
        mark = self.clock.current(now_ms)
        if mark is not None and start + self.size_ms <= mark and start not in self.windows:
            return event_key is not None and event_key in self.closed_keys
        window = self.windows.setdefault(start, Window())
        if event_key is not None:
            if event_key in window.seen:
                return True
            window.seen.add(event_key)
        window.events += 1
        for name, value in values.items():
            if value is not None:
                window.fields.setdefault(name, FieldStats()).add(value)
        self.dirty.add(start)
        self.clock.advance(event_time, now_ms)
        return True

    def flush(self, now_ms: int) -> list[dict[str, Any]]:
        """Metric updates for windows that changed (running) and windows that closed (final)."""
        mark = self.clock.settle(now_ms)
        # Versions order the emissions of a window downstream (later replaces earlier), so they
        # must grow strictly even when two flushes fall in the same millisecond.
        version = max(now_ms, self.last_version + 1)
        updates: list[dict[str, Any]] = []
        for start in sorted(self.windows):
            closed = mark is not None and start + self.size_ms <= mark
            if closed or start in self.dirty:
                updates += self._updates(start, self.windows[start], closed, version)
            if closed:
                self.closed_keys.remember(now_ms, self.windows.pop(start).seen)
        self.closed_keys.prune(now_ms)
        self.dirty.clear()
        if updates:
            self.last_version = version
        return updates

    def next_close_wall(self) -> int | None:
        """Wall-clock ms at which the earliest open window closes if nothing else arrives."""
        if not self.windows:
            return None
        return self.clock.wall_time_reaching(min(self.windows) + self.size_ms)

    def _updates(self, start: int, window: Window, final: bool, version: int) -> list[dict]:
        base = {
            "stream": self.stream,
            "group": self.group,
            "window_start": start,
            "window_end": start + self.size_ms,
            "final": final,
            "version": version,
        }
        out = [
            {
                **base,
                "field": COUNT_FIELD,
                "count": window.events,
                "sum": float(window.events),
                "min": None,
                "max": None,
                "avg": None,
            }
        ]
        for name, stats in sorted(window.fields.items()):
            out.append(
                {
                    **base,
                    "field": name,
                    "count": stats.count,
                    "sum": stats.total,
                    "min": stats.low,
                    "max": stats.high,
                    "avg": stats.total / stats.count,
                }
            )
        return out
