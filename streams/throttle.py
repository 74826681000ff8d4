"""When the running values of a changed window go out: the leading edge, then one per interval.

A window that has not gone out for a whole interval goes out at once on a change, so a
dashboard sees a quiet group's event without waiting out the interval; changes that follow
within the interval are coalesced into one update at its end. Either way a key emits at most
about once per interval, which bounds what the flow, Kafka and Redis do per window.
"""

from __future__ import annotations


class EmitThrottle:
    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self.last: int | None = None  # when values last went out
        self.due: int | None = None  # when the coalesced changes go out

    def changed(self, now: int) -> bool:
        """A change at ``now``: True when it goes out at once (then call :meth:`emitted`)."""
        if self.due is not None:
            return False
        if self.last is None or now - self.last >= self.interval_ms:
            return True
        self.due = self.last + self.interval_ms
        return False

    def emitted(self, now: int) -> None:
        self.last = now
        self.due = None

    def postpone(self, now: int) -> None:
        """Go out one interval from ``now`` (after a restart: updates may have been lost)."""
        self.due = now + self.interval_ms
