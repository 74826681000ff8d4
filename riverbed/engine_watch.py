"""Supervise the embedded engines as the components are: a dead one is restarted in place.

valkey comes back on its port and AOF, so nothing it held is lost (up to its one-second fsync).
tansu keeps topics in memory only: a restarted broker is empty. Every component is stopped
before it comes back (a producer left running would recreate topics in it with the broker's
default partitions), the flow's recovery store, which points into the old broker's topics, is
cleared, and the components start again against it (the API recreates the topics). Records
that the old broker held and no stage had processed yet are lost with it; the console and
``/readyz`` say so, and when.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from riverbed.embedded import Engine, EngineStartError


@dataclass
class WatchedEngine:
    """An embedded engine and how to start it again on the same port and data."""

    name: str  # "redis" or "kafka"
    label: str  # what the console calls it: "redis (valkey)"
    engine: Engine
    start: Callable[[], Engine]
    restarts: int = 0
    lost_on_restart: str = ""  # what a restart cannot bring back, said on the console
    reported_down: bool = False  # its death was reported; restarting it keeps failing


class EngineWatcher:
    """Polls the engines from a thread of ``riverbed up``; ``after_restart`` runs after each
    restart (for the broker: restart the components), ``record`` keeps the story for /readyz."""

    def __init__(
        self,
        engines: list[WatchedEngine],
        report: Callable[[str], None],
        before_restart: Callable[[WatchedEngine], None],
        after_restart: Callable[[WatchedEngine], None],
        record: Callable[[WatchedEngine, int], None],
    ) -> None:
        self.engines = engines
        self.report = report
        self.before_restart = before_restart
        self.after_restart = after_restart
        self.record = record
        self._stop = threading.Event()

    def check_once(self) -> None:
        for watched in self.engines:
            code = watched.engine.process.poll()
            if code is None:
                continue
            if not watched.reported_down:
                watched.reported_down = True
                self.report(
                    f"! {watched.label} exited with code {code}; restarting it "
                    f"(log: {watched.engine.log_path})"
                    + (f"; {watched.lost_on_restart}" if watched.lost_on_restart else "")
                )
                self.before_restart(watched)
            try:
                watched.engine = watched.start()
            except EngineStartError as exc:
                self.report(f"! {watched.label} did not start again: {exc}; retrying")
                self._stop.wait(1.0)
                continue
            watched.reported_down = False
            watched.restarts += 1
            self.report(f"  {watched.label} restarted on {watched.engine.url}")
            self.after_restart(watched)
            self.record(watched, code)

    def run(self, interval: float = 0.5) -> None:
        while not self._stop.wait(interval):
            self.check_once()

    def stop(self) -> None:
        self._stop.set()


def engine_record(watched: WatchedEngine, code: int) -> str:
    """What /readyz shows for an engine that was restarted."""
    return json.dumps(
        {
            "restarts": watched.restarts,
            "last_exit_code": code,
            "last_restart_at": int(time.time() * 1000),
            "lost": watched.lost_on_restart or None,
        }
    )
