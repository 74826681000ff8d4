"""``riverbed up`` driven as a user drives it: a child process with its console collected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from riverbed.embedded import free_port
from tests.conftest import wait_until


def processes_using(data_dir: Path) -> list[int]:
    """Pids whose command line or environment mention ``data_dir`` (our children would)."""
    needle = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (
                needle in (entry / "cmdline").read_bytes()
                or needle in (entry / "environ").read_bytes()
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class RiverbedUp:
    """``riverbed up`` in a child process, with its console output collected line by line."""

    def __init__(self, data_dir: Path, port: int, demo: bool, sql_port: int = 0) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.sql_port = sql_port or free_port()
        argv = [
            sys.executable,
            "-m",
            "riverbed.cli",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ] + (["--demo"] if demo else [])
        # A process group of its own, as a shell gives a foreground job: stop() then signals
        # the whole group, as a terminal's Ctrl-C does.
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "RIVERBED_SQL_PORT": str(self.sql_port)},
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(
            target=lambda: self.lines.extend(self.process.stdout or []), daemon=True
        )
        self.reader.start()

    def wait_up(self) -> None:
        """Until the whole announcement is printed: its last line is the Ctrl-C hint (the
        "Riverbed is up" line comes first; the admin key a few lines after it)."""
        wait_until(
            lambda: (
                any(f"Riverbed is up: {self.base}" in line for line in self.lines)
                and any("Ctrl-C stops everything" in line for line in self.lines)
            ),
            120,
            message="the 'Riverbed is up' announcement",
        )

    def stop(self) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to every process of the foreground group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(90)
        self.reader.join(5)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)
