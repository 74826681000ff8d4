"""Measuring a pipeline process that drains a pre-filled topic: its rate and its memory.

The process is started by :class:`riverbed.supervisor.Supervisor` as in production; progress is
whatever the caller can observe from outside (a Redis counter, the records it produced).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from riverbed.embedded import wait_for
from riverbed.supervisor import Child


class Progress(NamedTuple):
    done: int  # events the process has finished with
    at: float  # when that was true, in seconds on a clock the caller keeps the same


def drain_rate(
    progress: Callable[[], Progress], total: int, child: Child, timeout: float = 600
) -> float:
    """Events/s between the first progress observed and ``total`` done.

    Start-up (imports, consumer group join, first fetch) is left out: the clock starts at the
    first progress. Raises ``SystemExit`` naming the child's log if it exits, does nothing
    within two minutes, finishes before a second observation, or stalls past ``timeout``.
    """
    latest = [Progress(0, 0.0)]

    def reached(count: int) -> Callable[[], bool]:
        def check() -> bool:
            latest[0] = progress()
            return latest[0].done >= count

        return check

    if not wait_for(reached(1), 120, child.process, interval=0.01):
        raise SystemExit(f"{child.name} processed nothing; see {child.log_path}")
    first = latest[0]
    if first.done >= total:
        raise SystemExit(f"{child.name} was done before its progress could be timed; more events")
    if not wait_for(reached(total), timeout, child.process, interval=0.01):
        raise SystemExit(
            f"{child.name} stalled at {latest[0].done} of {total}; see {child.log_path}"
        )
    last = latest[0]
    return (last.done - first.done) / (last.at - first.at)


def status_mb(pid: int, field: str) -> float:
    """A memory line of ``/proc/<pid>/status`` in MB (``VmRSS`` now, ``VmHWM`` peak); NaN if the
    process is gone or the system has no procfs."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
