"""``riverbed up --demo`` as a user runs it: URLs printed, demo data flowing, clean Ctrl-C."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from riverbed.embedded import free_port, port_is_free
from tests.conftest import api_client, wait_until
from tests.helpers.riverbed_up import RiverbedUp, processes_using

pytestmark = pytest.mark.e2e


def admin_key_printed(output: str) -> str:
    found = re.search(r"admin key\s+(rb_\S+)", output)
    assert found, output
    return found.group(1)


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
        # The demo prints an admin key on loopback: the first minute needs no setup.
        key = admin_key_printed(up.output)
        api = api_client(base, key)
        kafka_line = next(line for line in up.lines if line.strip().startswith("kafka"))
        kafka_port = int(re.search(r":(\d+)", kafka_line).group(1))  # type: ignore[union-attr]

        def demo_metrics() -> bool:
            latest = api.get("/v1/streams/purchases/metrics", timeout=10).json()["latest"]
            return "*|*" in latest and latest["*|*"]["count"] > 0

        wait_until(demo_metrics, 60, message="demo purchases to show up as live metrics")

        def declared_demo_metric() -> bool:
            body = api.get("/v1/metrics/page_latency", timeout=10).json()
            return bool(body["source"] == "file" and body["running"] and body["latest"])

        wait_until(declared_demo_metric, 60, message="the demo's metrics.yaml to be computed")
        second = RiverbedUp(data_dir, free_port(), demo=False)
        assert second.process.wait(30) == 2
        second.reader.join(5)
        assert f"another riverbed up (pid {up.process.pid})" in second.output, second.output
        assert api.get("/readyz", timeout=10).status_code == 200
        latest_url = "/registry/subjects/events.pageviews-value/versions/latest"
        schema_id = api.get(latest_url, timeout=10).json()["id"]
        # Accepted just before Ctrl-C: the drain must get all of it into ClickHouse.
        burst = [
            {"user_id": f"u{i}", "page": page, "load_ms": 1.0, "ts": time.time_ns() // 1_000_000}
            for i in range(2000)
        ]
        response = api.post("/v1/streams/pageviews/events", json=burst, timeout=30)
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
        assert admin_key_printed(again.output) == key  # kept in the data dir, not minted again
        sql = f"SELECT count() FROM riverbed.events_pageviews FINAL WHERE page = '{page}'"
        rows = api.post("/v1/query", json={"sql": sql}, timeout=30).json()["rows"]
        assert int(rows[0][0]) == len(burst)
        latest = api.get("/v1/streams/purchases/metrics", timeout=10).json()["latest"]
        assert latest["*|*"]["count"] > 0  # live values came back from valkey's AOF
        assert api.get(latest_url, timeout=10).json()["id"] == schema_id  # ids are stable
    finally:
        assert again.stop() == 0, again.output
