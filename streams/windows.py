"""A stream's built-in metrics: tumbling windows per (stream, group) with the count of events
and the count, sum, min, max and avg of every numeric field, as ``MetricUpdate`` rows.

They are computed by the one window engine, the declared metrics' (``MetricWindows`` in
``streams.metrics.state``): a stream's built-in metrics are a generated declaration (count,
and count/sum/min/max per numeric field, tumbling over the stream's window), and this module
only translates between the two shapes. So assigning windows, event-time watermarks, closing,
lateness, dedup of redelivered events and versions live in one place, and the rows downstream
(the ``metrics`` topic and table, Redis latest values and series) stay what they were.

Fields are learnt as events bring them (a schema evolution may add a numeric field to a
running stream): the generated declaration grows, and open windows get empty states for the
new aggregations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from streams.metrics.definition import Aggregation, Metric
from streams.metrics.state import MetricWindows
from streams.watermark import RecentlyClosed, Watermark

COUNT_FIELD = "*"
PER_FIELD = ("count", "sum", "min", "max")


@lru_cache(maxsize=4096)
def builtin_metric(stream: str, size_ms: int, lateness_ms: int, fields: tuple[str, ...]) -> Metric:
    """The generated declaration of a stream's built-in metrics over ``fields``.

    Its name starts with ``_``, which no declared metric may, and it is never stored: it is
    derived again from the stream whenever the flow needs it.
    """
    aggregations = [Aggregation("count", None, "count")]
    for name in fields:
        aggregations += [Aggregation(op, name, f"{op}|{name}") for op in PER_FIELD]
    definition = {
        "name": f"_builtin_{stream}",
        "stream": stream,
        "aggregations": [a.name for a in aggregations],
        "window": {"type": "tumbling", "size": f"{size_ms}ms"},
    }
    return Metric(definition, tuple(aggregations), lateness_ms, fields)


@dataclass
class WindowState:
    """Open built-in windows of one group; picklable so Bytewax can snapshot it."""

    stream: str
    group: str
    size_ms: int
    lateness_ms: int
    idle_grace_ms: int = 0
    source_watermarks: bool = False
    late_dedup_ms: int = 120_000
    engine: MetricWindows = field(init=False)

    def __post_init__(self) -> None:
        clock = Watermark(self.lateness_ms, self.idle_grace_ms, self.source_watermarks)
        self.engine = MetricWindows(
            builtin_metric(self.stream, self.size_ms, self.lateness_ms, ()),
            self.group,
            {},
            clock,
            closed_keys=RecentlyClosed(self.late_dedup_ms),
        )

    @property
    def windows(self) -> dict[int, Any]:
        return self.engine.windows

    @property
    def dirty(self) -> set[int]:
        return self.engine.dirty

    @property
    def max_event_time(self) -> int | None:
        return self.engine.clock.max_event_time

    @property
    def source_mark(self) -> int | None:
        return self.engine.clock.source_mark

    def watermark(self, now_ms: int) -> int | None:
        return self.engine.clock.current(now_ms)

    def resumed(self, now_ms: int) -> None:
        self.engine.clock.resumed(now_ms)

    def next_close_wall(self) -> int | None:
        """Wall-clock ms at which the earliest open window closes if nothing else arrives."""
        return self.engine.next_close_wall()

    def begin_batch(self, now_ms: int) -> None:
        self.engine.begin_batch(now_ms)

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
        numbers = {name: float(v) for name, v in values.items() if v is not None}
        if not set(values) <= set(self.engine.metric.fields):
            self._learn(values)
        return self.engine.add(event_time, numbers, {}, now_ms, event_key, source_mark)

    def _learn(self, values: dict[str, Any]) -> None:
        """Grow the declaration by new fields; open windows get empty states for them."""
        old = self.engine.metric
        fields = old.fields + tuple(sorted(set(values) - set(old.fields)))
        metric = builtin_metric(self.stream, self.size_ms, self.lateness_ms, fields)
        added = metric.aggregators[len(old.aggregators) :]
        for window in self.engine.windows.values():
            if window.acc.states:
                window.acc.states = [*window.acc.states, *(agg.initial() for agg in added)]
        self.engine = dataclasses.replace(self.engine, metric=metric)

    def flush(self, now_ms: int) -> list[dict[str, Any]]:
        """Metric updates for windows that changed (running) and windows that closed (final)."""
        return [row for result in self.engine.flush(now_ms) for row in self._rows(result)]

    def _rows(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        values = result["values"]
        base = {
            "stream": self.stream,
            "group": self.group,
            "window_start": result["window_start"],
            "window_end": result["window_end"],
            "final": result["final"],
            "version": result["version"],
        }
        count = result["count"]
        rows = [
            {
                **base,
                "field": COUNT_FIELD,
                "count": count,
                "sum": float(count),
                "min": None,
                "max": None,
                "avg": None,
            }
        ]
        for name in sorted(self.engine.metric.fields):
            seen = int(values.get(f"count|{name}", 0))
            if seen:
                total = values[f"sum|{name}"]
                rows.append(
                    {
                        **base,
                        "field": name,
                        "count": seen,
                        "sum": total,
                        "min": values[f"min|{name}"],
                        "max": values[f"max|{name}"],
                        "avg": total / seen,
                    }
                )
        return rows
