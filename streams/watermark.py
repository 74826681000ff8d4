"""Event-time progress of one keyed state: when is a window complete, when is an event late?

Two marks, because they answer different questions:

- The **event mark** is ``progress - allowed lateness``, where progress is the source's event
  time on every partition (the minimum of their maxima; without source watermarks, this key's
  newest event). It is data alone, the same for every key that has read the same items, so it
  decides whether an event is late: an event the stream-wide group counts is never late in
  its own group. Until every partition has delivered, the source's progress is unknown and
  the watermark stands in for it (:meth:`Watermark.late_mark`).
- The **watermark** (:meth:`Watermark.current`) is the event mark, or more: while a key
  receives nothing it keeps advancing with the wall clock after an idle grace, so a quiet
  group's windows still get their final values. It never steps back. A window it closes is
  kept until the event mark passes it too, so an event that is not late amends it (a later
  final with more events, which the sinks rank above the earlier one).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Watermark:
    lateness_ms: int
    # Wall time a key may stay quiet before its watermark starts advancing by the clock. It
    # must outlast an upstream restart: events held up by a restarting agent are not late.
    idle_grace_ms: int = 0
    # With source watermarks, event time advances by what the *source* has seen on every
    # partition, not by this key's own newest event: a backlog read partition by partition
    # would otherwise close windows that another partition's older events still belong to.
    source_watermarks: bool = False
    source_mark: int | None = None
    max_event_time: int | None = None
    max_seen_wall: int = 0
    # The highest watermark ever observed: a new event resets the idle advance, and without
    # this floor the watermark would step back and let a closed window reopen.
    high: int | None = None
    # The highest lateness mark a flush dropped windows by: it never steps back either.
    late_floor: int | None = None

    def event_mark(self) -> int | None:
        """Progress by the data alone (None while unknown); see :meth:`late_mark`."""
        if self.max_event_time is None:
            return None
        if self.source_watermarks:
            return None if self.source_mark is None else self.source_mark - self.lateness_ms
        return self.max_event_time - self.lateness_ms

    def late_mark(self, now_ms: int) -> int | None:
        """A window ending at or before it takes no more events: the event mark, never lower
        than before. While the source's progress is unknown (a partition of the stream has not
        delivered yet) nothing else can tell, so the watermark decides, idle clock and all."""
        mark = self.event_mark()
        if mark is None and self.source_watermarks:
            mark = self.current(now_ms)
        if self.late_floor is not None and (mark is None or mark < self.late_floor):
            return self.late_floor
        return mark

    def settle_late(self, now_ms: int) -> int | None:
        """The lateness mark at a flush, remembered as the floor for later ones."""
        self.late_floor = self.late_mark(now_ms)
        return self.late_floor

    def current(self, now_ms: int) -> int | None:
        """The watermark: a window ending at or before it has its final value out."""
        if self.max_event_time is None:
            return None
        event_mark = self.event_mark()
        idle = now_ms - self.max_seen_wall - self.idle_grace_ms
        clock_mark = self.max_event_time - self.lateness_ms + idle if idle > 0 else None
        marks = [m for m in (event_mark, clock_mark, self.high) if m is not None]
        return max(marks) if marks else None

    def see_source(self, source_mark: int | None) -> None:
        if source_mark is not None and (self.source_mark is None or source_mark > self.source_mark):
            self.source_mark = source_mark

    def advance(self, event_time: int, now_ms: int) -> None:
        """An accepted event: the key is not idle, and the newest event time may move on.

        Every event restarts the idle clock, not only a newest one: after a single event from
        the future, a busy key would otherwise count as idle and its clock-driven watermark
        would run ahead from that future time, making every ordinary event late.
        """
        if now_ms - self.max_seen_wall > self.idle_grace_ms:
            # Only the clock's idle advance can drop when the idle clock restarts (the event and
            # source marks never move back): keep what it reached as the floor.
            self.high = self.current(now_ms)
        if self.max_event_time is None or event_time > self.max_event_time:
            self.max_event_time = event_time
        self.max_seen_wall = max(self.max_seen_wall, now_ms)

    def settle(self, now_ms: int) -> int | None:
        """The watermark at a flush, remembered as the floor for later ones."""
        self.high = self.current(now_ms)
        return self.high

    def resumed(self, now_ms: int) -> None:
        """After a restore from a snapshot: the time the flow was down is not idle time of the
        stream (events may be waiting upstream), so the idle clock starts again now."""
        self.max_seen_wall = max(self.max_seen_wall, now_ms)

    def wall_time_reaching(self, event_time: int) -> int | None:
        """Wall-clock ms at which the idle advance alone brings the watermark to ``event_time``.

        Never before the idle advance can start: a window the event-time mark would close but
        the (lagging) source mark holds open must not be re-checked in a busy loop meanwhile.
        """
        if self.max_event_time is None:
            return None
        idle_from = self.max_seen_wall + self.idle_grace_ms
        reach = idle_from + event_time - self.max_event_time + self.lateness_ms
        return max(reach, idle_from + 1)


@dataclass
class RecentlyClosed:
    """Event keys counted in windows that closed within the last ``horizon_ms`` of wall time.

    A copy of an event that an agent re-processes after a crash can reach the flow after the
    original's window closed. Without this memory it would be dead-lettered as late although
    its original was counted; with it, such a copy is recognised and ignored. Bounded by wall
    time, not by count: memory is the keys of the windows closed within the horizon.
    """

    horizon_ms: int = 120_000
    chunks: list[tuple[int, frozenset[int]]] = field(default_factory=list)

    def remember(self, now_ms: int, keys: set[int]) -> None:
        if self.horizon_ms > 0 and keys:
            self.chunks.append((now_ms, frozenset(keys)))

    def prune(self, now_ms: int) -> None:
        while self.chunks and self.chunks[0][0] < now_ms - self.horizon_ms:
            self.chunks.pop(0)

    def __contains__(self, key: object) -> bool:
        return any(key in keys for _, keys in self.chunks)
