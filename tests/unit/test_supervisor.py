"""Supervisor.check_once with real tiny child processes: crash reports, backoff, restarts."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from riverbed.supervisor import Child, Supervisor
from tests.conftest import wait_until

CRASH = [sys.executable, "-c", "raise SystemExit(3)"]
LINGER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def reports() -> list[str]:
    return []


@pytest.fixture
def supervisor(tmp_path: Path, reports: list[str]) -> Iterator[Supervisor]:
    supervisor = Supervisor(tmp_path, env={}, report=reports.append)
    yield supervisor
    supervisor.stop(timeout=5)


def launch(supervisor: Supervisor, argv: list[str], **state: float) -> Child:
    child = Child("worker", argv, dict(os.environ), supervisor.log_dir / "worker.log")
    for name, value in state.items():
        setattr(child, name, value)
    supervisor.children.append(child)
    child.start()
    return child


def crash_detected(supervisor: Supervisor, child: Child) -> tuple[float, float]:
    """Wait for the child to exit and let the supervisor notice; return the check's time span."""
    assert child.process is not None
    child.process.wait(timeout=10)
    before = time.monotonic()
    supervisor.check_once()
    return before, time.monotonic()


def test_crash_is_reported_with_exit_code_and_first_restart_is_half_a_second_later(
    supervisor: Supervisor, reports: list[str]
) -> None:
    child = launch(supervisor, CRASH)
    before, after = crash_detected(supervisor, child)
    assert child.history == [3]
    assert child.restarts == 0
    assert reports[0].startswith("! worker exited with code 3; restarting in 0.5s")
    assert "worker.log" in reports[0]
    assert before + 0.5 <= child.next_start <= after + 0.5


def test_crashed_child_is_not_restarted_before_its_backoff_elapses(
    supervisor: Supervisor,
) -> None:
    child = launch(supervisor, CRASH, restarts=6)  # 30 s backoff: far beyond this test
    crash_detected(supervisor, child)
    first = child.process
    supervisor.check_once()
    supervisor.check_once()
    assert child.process is first
    assert child.restarts == 6
    assert child.history == [3]


def test_crashed_child_is_restarted_once_its_backoff_elapses(
    supervisor: Supervisor, reports: list[str]
) -> None:
    child = launch(supervisor, CRASH)
    crash_detected(supervisor, child)
    first, due = child.process, child.next_start

    def restarted() -> bool:
        supervisor.check_once()
        return child.restarts == 1

    wait_until(restarted, timeout=5)
    assert time.monotonic() >= due
    assert child.process is not first
    assert child.next_start == 0.0
    assert reports[-1] == "  worker restarted (restart #1)"


def test_second_consecutive_crash_doubles_the_backoff(
    supervisor: Supervisor, reports: list[str]
) -> None:
    child = launch(supervisor, CRASH)
    crash_detected(supervisor, child)

    def restarted() -> bool:
        supervisor.check_once()
        return child.restarts == 1

    wait_until(restarted, timeout=5)
    before, after = crash_detected(supervisor, child)
    assert child.history == [3, 3]
    assert "restarting in 1.0s" in reports[-1]
    assert before + 1.0 <= child.next_start <= after + 1.0


@pytest.mark.parametrize(("restarts", "delay"), [(3, "4.0s"), (5, "16.0s"), (6, "30.0s")])
def test_backoff_grows_exponentially_and_is_capped_at_thirty_seconds(
    supervisor: Supervisor, reports: list[str], restarts: int, delay: str
) -> None:
    child = launch(supervisor, CRASH, restarts=restarts)
    crash_detected(supervisor, child)
    assert f"restarting in {delay}" in reports[-1]


def test_running_child_is_left_alone(supervisor: Supervisor, reports: list[str]) -> None:
    child = launch(supervisor, LINGER)
    supervisor.check_once()
    assert child.process is not None
    assert child.process.poll() is None
    assert child.history == []
    assert reports == []


def test_child_stable_for_a_minute_forgets_its_old_crashes(supervisor: Supervisor) -> None:
    child = launch(supervisor, LINGER, restarts=4)
    child.started_at = time.monotonic() - 61
    supervisor.check_once()
    assert child.restarts == 0


def test_recently_restarted_child_keeps_its_crash_count(supervisor: Supervisor) -> None:
    child = launch(supervisor, LINGER, restarts=4)
    supervisor.check_once()
    assert child.restarts == 4


def test_stop_terminates_running_children(supervisor: Supervisor) -> None:
    child = launch(supervisor, LINGER)
    supervisor.stop(timeout=5)
    assert child.process is not None
    assert child.process.returncode == -signal.SIGTERM
