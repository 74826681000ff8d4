"""``riverbed up --demo`` as a user runs it: URLs printed, demo data flowing, clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
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


class RiverbedUp:
    """``riverbed up`` in a child process, with its console output collected line by line."""

    def __init__(self, data_dir: Path, port: int, demo: bool) -> None:
        self.base = f"http://127.0.0.1:{port}"
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
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(
            target=lambda: self.lines.extend(self.process.stdout or []), daemon=True
        )
        self.reader.start()

    def wait_up(self) -> None:
        wait_until(
            lambda: any(f"Riverbed is up: {self.base}" in line for line in self.lines),
            120,
            message="the 'Riverbed is up' line",
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


def test_riverbed_up_serves_demo_data_drains_on_ctrl_c_and_keeps_it_across_restarts(
    tmp_path: Path,
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    up = RiverbedUp(data_dir, port, demo=True)
    base = up.base
    page = f"/drain/{uuid.uuid4().hex[:8]}"
    try:
        up.wait_up()
        kafka_line = next(line for line in up.lines if line.strip().startswith("kafka"))
        kafka_port = int(re.search(r":(\d+)", kafka_line).group(1))  # type: ignore[union-attr]

        def demo_metrics() -> bool:
            latest = httpx.get(f"{base}/v1/streams/purchases/metrics", timeout=10).json()["latest"]
            return "*|*" in latest and latest["*|*"]["count"] > 0

        wait_until(demo_metrics, 60, message="demo purchases to show up as live metrics")

        def declared_demo_metric() -> bool:
            body = httpx.get(f"{base}/v1/metrics/page_latency", timeout=10).json()
            return bool(body["source"] == "file" and body["running"] and body["latest"])

        wait_until(declared_demo_metric, 60, message="the demo's metrics.yaml to be computed")
        second = RiverbedUp(data_dir, free_port(), demo=False)
        assert second.process.wait(30) == 2
        second.reader.join(5)
        assert f"another riverbed up (pid {up.process.pid})" in second.output, second.output
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        latest_url = f"{base}/registry/subjects/events.pageviews-value/versions/latest"
        schema_id = httpx.get(latest_url, timeout=10).json()["id"]
        # Accepted just before Ctrl-C: the drain must get all of it into ClickHouse.
        burst = [
            {"user_id": f"u{i}", "page": page, "load_ms": 1.0, "ts": time.time_ns() // 1_000_000}
            for i in range(2000)
        ]
        response = httpx.post(f"{base}/v1/streams/pageviews/events", json=burst, timeout=30)
        assert response.status_code == 202
    finally:
        code = up.stop()
    assert code == 0, up.output
    assert "drained: every accepted event is stored" in up.output, up.output
    assert "stopped." in up.output
    assert not any("exited with code" in line for line in up.lines), up.output
    assert port_is_free(port) and port_is_free(kafka_port)
    assert processes_using(data_dir) == []

    again = RiverbedUp(data_dir, port, demo=False)
    try:
        again.wait_up()
        sql = f"SELECT count() FROM riverbed.events_pageviews FINAL WHERE page = '{page}'"
        rows = httpx.post(f"{base}/v1/query", json={"sql": sql}, timeout=30).json()["rows"]
        assert rows[0][0] == len(burst)
        latest = httpx.get(f"{base}/v1/streams/purchases/metrics", timeout=10).json()["latest"]
        assert latest["*|*"]["count"] > 0  # live values came back from valkey's AOF
        assert httpx.get(latest_url, timeout=10).json()["id"] == schema_id  # ids are stable
    finally:
        assert again.stop() == 0, again.output
