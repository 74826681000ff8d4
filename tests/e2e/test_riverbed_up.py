"""``riverbed up --demo`` as a user runs it: URLs printed, demo data flowing, clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from riverbed.embedded import free_port, port_is_free
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e


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


def test_riverbed_up_serves_demo_data_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "riverbed.cli",
            "up",
            "--demo",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(up.stdout or []), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: any(f"Riverbed is up: {base}" in line for line in lines),
            120,
            message="the 'Riverbed is up' line",
        )
        kafka_line = next(line for line in lines if line.strip().startswith("kafka"))
        kafka_port = int(re.search(r":(\d+)", kafka_line).group(1))  # type: ignore[union-attr]

        def demo_metrics() -> bool:
            latest = httpx.get(f"{base}/v1/metrics/purchases", timeout=10).json()["latest"]
            return "*|*" in latest and latest["*|*"]["count"] > 0

        wait_until(demo_metrics, 60, message="demo purchases to show up as live metrics")
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
        reader.join(5)
    output = "".join(lines)
    assert code == 0, output
    assert "stopped." in output
    assert not any("exited with code" in line for line in lines), output
    assert port_is_free(port) and port_is_free(kafka_port)
    assert processes_using(data_dir) == []
