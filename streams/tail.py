"""Which processed events go to the live tail: a sample, at most ``rate`` a second per stream.

The tail lets a person watch what a stream carries right now (``/v1/live/events``); it is a
window, not a copy: all of a busy stream would cost Redis and every viewer as much as the
pipeline itself. A token bucket per stream (``burst`` deep) refills at ``rate``; a batch takes
as many events as there are tokens, spread evenly over the batch so a burst is seen whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class TailSampler:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # stream -> (tokens, at)

    def take(self, stream: str, items: Sequence[T], now: float) -> list[T]:
        """The items of this batch that go to the tail (``now`` in seconds, monotonic)."""
        if self.rate <= 0 or not items:
            return []
        tokens, at = self._buckets.get(stream, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        count = min(int(tokens), len(items))
        self._buckets[stream] = (tokens - count, now)
        if count == 0:
            return []
        step = len(items) / count
        return [items[int(i * step)] for i in range(count)]
