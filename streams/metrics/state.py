"""Windows of one declared metric for one group: assign, fold, merge, flush.

Pure data and picklable, so Bytewax snapshots it with the source offsets. Three window kinds:

- tumbling ``size``: one window per event, ``[floor(t/size)*size, +size)``;
- hopping ``size``/``step``: ``size/step`` overlapping windows per event;
- session ``gap``: an event opens ``[t, t+gap)``; sessions that come within ``gap`` of each
  other merge, and a session that was already emitted under another start is retracted
  (``deleted``) so downstream upserts keyed by window start do not keep a stale half.

Every window remembers the event keys it counted, so a redelivered event is not counted twice.
An event is either counted in all of its windows or, when any of them has closed, in none and
reported late: partial counting would leave a window short with nothing saying why.

Late is decided by the event mark (``streams.watermark``), not by the idle clock: each
group has its own idle clock, and a quiet group's clock must not call late an event that the
stream-wide group, busy and so not idle, still counts. A window the idle clock closed has its
final value out but stays until the event mark passes it; an event for it then amends it and
it goes out final again, with more events (the sinks rank finals by their count,
``riverbed.core.window_versions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.metrics.definition import Metric
from streams.watermark import RecentlyClosed, Watermark


def window_start(event_time_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding ``event_time_ms`` (floor, also for negative times)."""
    return event_time_ms - (event_time_ms % size_ms)


@dataclass
class Accumulator:
    """One window's state: the events counted, one state per aggregation of the metric (see
    ``streams.metrics.aggregations``), and the keys of the events counted (for dedup)."""

    count: int = 0
    states: list[Any] = field(default_factory=list)
    keys: set[int] = field(default_factory=set)

    def add(self, metric: Metric, numbers: dict[str, float], hashes: dict[str, int]) -> None:
        if not self.states:
            self.states = [agg.initial() for agg in metric.aggregators]
        self.count += 1
        for index, (source, name, agg) in enumerate(metric.plan):
            if source is None:
                value: float | int | None = 1
            elif source == "numbers":
                value = numbers.get(name)
            else:
                value = hashes.get(name)
            if value is not None:
                self.states[index] = agg.add(self.states[index], value)

    def merge(self, metric: Metric, other: Accumulator) -> None:
        if not other.states:
            return
        if not self.states:
            self.states = [agg.initial() for agg in metric.aggregators]
        self.count += other.count
        self.states = [
            agg.merge(mine, theirs)
            for agg, mine, theirs in zip(metric.aggregators, self.states, other.states, strict=True)
        ]
        self.keys |= other.keys

    def values(self, metric: Metric) -> dict[str, float]:
        """Each aggregation's value; one with no input (avg of no values) is left out."""
        states = self.states or [agg.initial() for agg in metric.aggregators]
        out: dict[str, float] = {}
        for aggregation, agg, state in zip(
            metric.aggregations, metric.aggregators, states, strict=True
        ):
            value = agg.result(state)
            if value is not None:
                out[aggregation.name] = value
        return out


@dataclass
class OpenWindow:
    end: int
    acc: Accumulator = field(default_factory=Accumulator)


@dataclass
class MetricWindows:
    """Open windows of one (metric, group). ``emitted`` remembers starts already sent
    downstream, so a session merged away can be retracted."""

    metric: Metric
    group_key: str
    group: dict[str, str]
    clock: Watermark
    windows: dict[int, OpenWindow] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)
    emitted: set[int] = field(default_factory=set)
    retracted: dict[int, int] = field(default_factory=dict)  # start -> end
    last_version: int = 0
    closed_keys: RecentlyClosed = field(default_factory=RecentlyClosed)
    # The watermark at the last flush: windows ending by it have had their final value out.
    # (Not the clock's own floor, which an event after a quiet spell raises between flushes.)
    final_through: int | None = None
    # The lateness mark when the current batch began: a window ending by it is sealed. One
    # that the mark passed within the batch still takes events until the next batch, because
    # a backlog read in one batch (agents catching up after a restart) comes partition after
    # partition. Every group of an event sees the batch begin at the same item, so an event
    # the stream-wide group counts is never late in its own group.
    sealed_through: int | None = None

    def _starts(self, event_time: int) -> list[int]:
        kind = self.metric.window_type
        if kind == "tumbling":
            return [window_start(event_time, self.metric.window_ms("size"))]
        size, step = self.metric.window_ms("size"), self.metric.window_ms("step")
        last = window_start(event_time, step)
        return [last - k * step for k in range(size // step)]

    def begin_batch(self, now_ms: int) -> None:
        """Seal the windows the lateness mark has passed (call before each batch's events)."""
        self.sealed_through = self.clock.late_mark(now_ms)

    def add(
        self,
        event_time: int,
        numbers: dict[str, float],
        hashes: dict[str, int],
        now_ms: int,
        event_key: int | None = None,
        source_mark: int | None = None,
    ) -> bool:
        """Fold one event in; False when it is late (one of its windows has closed).

        A late copy of an event counted before its window closed (an agent's redelivery) is
        recognised by its key within the ``closed_keys`` horizon and ignored (True).
        """
        self.clock.see_source(source_mark)
        mark = self.clock.late_mark(now_ms)
        if self.metric.window_type == "session":
            touched = self._session(event_time, mark)
            if touched is None:
                return event_key is not None and event_key in self.closed_keys
        else:
            size = self.metric.window_ms("size")
            starts = self._starts(event_time)
            sealed = self.sealed_through
            if mark is not None and any(
                s + size <= mark
                and (s not in self.windows or (sealed is not None and s + size <= sealed))
                for s in starts
            ):
                return event_key is not None and self._counted(event_key, starts)
            touched = []
            for start in starts:
                if start not in self.windows:
                    self.windows[start] = OpenWindow(start + size)
                touched.append(start)
        for start in touched:
            acc = self.windows[start].acc
            if event_key is not None:
                if event_key in acc.keys:
                    continue
                acc.keys.add(event_key)
            acc.add(self.metric, numbers, hashes)
            self.dirty.add(start)
        self.clock.advance(event_time, now_ms)
        return True

    def _counted(self, event_key: int, starts: list[int]) -> bool:
        """Whether a late event is a copy of one counted before (in a window still held, or
        in one dropped within the ``closed_keys`` horizon)."""
        if event_key in self.closed_keys:
            return True
        return any(s in self.windows and event_key in self.windows[s].acc.keys for s in starts)

    def _session(self, event_time: int, mark: int | None) -> list[int] | None:
        """The session this event belongs to, after merging; None when it is late."""
        gap = self.metric.window_ms("gap")
        start, end = event_time, event_time + gap
        overlapping = [s for s, w in self.windows.items() if s - gap < event_time < w.end]
        if not overlapping and mark is not None and end <= mark:
            return None
        merged = OpenWindow(end)
        ends: dict[int, int] = {}
        for s in sorted(overlapping):
            window = self.windows.pop(s)
            ends[s] = window.end
            start, merged.end = min(start, s), max(merged.end, window.end)
            merged.acc.merge(self.metric, window.acc)
            self.dirty.discard(s)
        for s, old_end in ends.items():
            if s != start and s in self.emitted:
                self.emitted.discard(s)
                self.retracted[s] = old_end
        self.windows[start] = merged
        return [start]

    def flush(self, now_ms: int) -> list[dict[str, Any]]:
        """Updates for changed windows (running), closed ones (final) and retracted sessions.

        A window goes out final once the watermark passes its end, and again only if an event
        amends it before the event mark passes it too; then it is dropped.
        """
        before = self.final_through
        mark = self.clock.settle(now_ms)
        self.final_through = mark
        drop = self.clock.settle_late(now_ms)
        version = max(now_ms, self.last_version + 1)
        updates: list[dict[str, Any]] = [
            self._update(start, end, None, final=True, version=version, deleted=True)
            for start, end in sorted(self.retracted.items())
        ]
        self.retracted.clear()
        for start in sorted(self.windows):
            window = self.windows[start]
            closed = mark is not None and window.end <= mark
            newly_closed = closed and (before is None or window.end > before)
            if newly_closed or start in self.dirty:
                updates.append(self._update(start, window.end, window.acc, closed, version))
                self.emitted.add(start)
            if drop is not None and window.end <= drop:
                self.closed_keys.remember(now_ms, self.windows.pop(start).acc.keys)
                self.emitted.discard(start)
        self.closed_keys.prune(now_ms)
        self.dirty.clear()
        if updates:
            self.last_version = version
        return updates

    def next_close_wall(self) -> int | None:
        """When the earliest window without its final value gets it, if nothing arrives."""
        done = self.final_through
        ends = [w.end for w in self.windows.values() if done is None or w.end > done]
        if not ends:
            return None
        return self.clock.wall_time_reaching(min(ends))

    def _update(
        self,
        start: int,
        end: int,
        acc: Accumulator | None,
        final: bool,
        version: int,
        deleted: bool = False,
    ) -> dict[str, Any]:
        return {
            "metric": self.metric.name,
            "generation": self.metric.generation,
            "stream": self.metric.stream,
            "group_key": self.group_key,
            "group": self.group,
            "window_start": start,
            "window_end": end,
            "count": 0 if acc is None else acc.count,
            "values": {} if acc is None else acc.values(self.metric),
            "final": final,
            "deleted": deleted,
            "version": version,
        }
