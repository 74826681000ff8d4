"""Runs the pipeline's processes, restarts the ones that crash, stops them all on a signal.

Each component is a child process (``riverbed run COMPONENT``) with its own log; a crash is
reported on the console and the child restarted with exponential backoff (capped), so one bad
component cannot take the others down or spin the CPU.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from riverbed.core.lifecycle import EXIT_RESTART
from riverbed.embedded import spawn, stop_process

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    history: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.process = spawn(self.argv, self.log_path, self.env)
        self.started_at = time.monotonic()


def component_argv(component: str) -> list[str]:
    return [sys.executable, "-m", "riverbed.cli", "run", component]


class Supervisor:
    """Start children, watch them, restart crashed ones; ``report`` prints to the console and
    ``on_crash(name, exit code, seconds until the restart)`` tells whoever else listens."""

    def __init__(
        self,
        log_dir: Path,
        env: dict[str, str],
        report: Callable[[str], None] = print,
        on_crash: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.env = env
        self.report = report
        self.on_crash = on_crash
        self.children: list[Child] = []
        self._stop = threading.Event()
        self._paused = threading.Event()

    def add(self, component: str, instance: int = 0) -> Child:
        """Start a component; replicas (``instance`` > 0) are named ``agents#2`` and so on."""
        name = component if instance == 0 else f"{component}#{instance + 1}"
        child = Child(
            name,
            component_argv(component),
            {**os.environ, **self.env, "RIVERBED_INSTANCE": str(instance)},
            self.log_dir / f"{name.replace('#', '-')}.log",
        )
        child.start()
        # Listed once started: the watching thread may look at the list at any moment.
        self.children.append(child)
        return child

    def signal(self, name: str, signum: int) -> None:
        for child in self.children:
            if child.name == name and child.process and child.process.poll() is None:
                child.process.send_signal(signum)

    def check_once(self) -> None:
        if self._paused.is_set():
            return
        now = time.monotonic()
        for child in list(self.children):
            if child.process is None:
                continue  # never started (its start failed); nothing to watch
            code = child.process.poll()
            if code is None:
                if child.restarts and now - child.started_at > 60:
                    child.restarts = 0  # stable for a minute: forget old crashes
                continue
            if code == EXIT_RESTART:
                child.start()
                self.report(f"  {child.name} restarted to pick up catalog changes")
                continue
            if child.next_start == 0.0:
                child.history.append(code)
                delay = min(30.0, 0.5 * 2**child.restarts)
                child.next_start = now + delay
                self.report(
                    f"! {child.name} exited with code {code}; restarting in {delay:.1f}s "
                    f"(log: {child.log_path})"
                )
                if self.on_crash is not None:
                    self.on_crash(child.name, code, delay)
            elif now >= child.next_start:
                child.restarts += 1
                child.next_start = 0.0
                child.start()
                self.report(f"  {child.name} restarted (restart #{child.restarts})")

    def pause(self, reason: str) -> None:
        """Stop every child and keep it stopped until :meth:`resume` (not counted as crashes)."""
        self.report(f"  stopping every component: {reason}")
        self._paused.set()
        for child in self.children:
            if child.process is not None:
                stop_process(child.process)

    def resume(self) -> None:
        """Start every child again, as new."""
        for child in self.children:
            child.restarts, child.next_start = 0, 0.0
            child.start()
        self._paused.clear()
        self.report("  every component started again")

    def run(self, interval: float = 0.5) -> None:
        while not self._stop.wait(interval):
            self.check_once()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child at once (each drains and commits), SIGKILL what lingers."""
        self._stop.set()
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            stop_process(process, timeout=timeout)
