"""A circuit breaker: stop sending work to a dependency that is down, probe it, resume.

While a dependency is known to be down, each caller waiting out its full timeout (10 s for a
Kafka produce) only to fail helps nobody: clients time out, connections pile up. The breaker
opens on the first sign of trouble and callers fail at once; after ``cooldown`` seconds one
caller is let through to probe, and its success closes the breaker again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    """Thread-safe: opened from a client library's callback thread, read on the event loop."""

    def __init__(self, cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.cooldown = cooldown
        self.clock = clock
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        self._probing = False
        self.reason = ""

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return CLOSED
            if self._probing or self.clock() - self._opened_at < self.cooldown:
                return OPEN
            return HALF_OPEN

    def open(self, reason: str) -> None:
        """Record trouble. A failed probe starts a new cooldown; repeated reports while open
        do not (a library that repeats itself must not keep the probe from coming)."""
        with self._lock:
            if self._opened_at is None or self._probing:
                self._opened_at = self.clock()
            self.reason = reason
            self._probing = False

    def close(self) -> None:
        with self._lock:
            self._opened_at = None
            self._probing = False
            self.reason = ""

    def try_probe(self) -> bool:
        """True for the one caller that may probe now (the breaker is half-open)."""
        with self._lock:
            ready = (
                self._opened_at is not None
                and not self._probing
                and self.clock() - self._opened_at >= self.cooldown
            )
            if ready:
                self._probing = True
            return ready
