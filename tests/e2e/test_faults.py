"""Kill an engine mid-stream: every accepted event is still stored exactly once.

A producer posts with retries and stable event ids, as the ingest contract asks. Each test
runs a pipeline with engines of its own, so what it kills cannot disturb the other tests.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from riverbed.embedded import free_port, start_kafka, start_redis
from tests.conftest import (
    PIPELINE_COMPONENTS,
    admin_key,
    api_client,
    start_components,
    wait_until,
)
from tests.helpers.riverbed_up import RiverbedUp, processes_using

pytestmark = pytest.mark.e2e


def page_views(page: str, count: int) -> list[dict[str, Any]]:
    now = time.time_ns() // 1_000_000
    return [
        {"event_id": f"{page}-{i}", "user_id": f"u{i % 7}", "page": page, "load_ms": 1.0, "ts": now}
        for i in range(count)
    ]


def post_until_accepted(
    api: httpx.Client, events: list[dict[str, Any]], timeout: float = 90
) -> None:
    """Retry with the same event ids until every event is accepted (202), as a producer would."""

    def accepted() -> bool:
        response = api.post("/v1/streams/pageviews/events", json=events, timeout=15)
        return response.status_code == 202

    wait_until(accepted, timeout, interval=0.5, message="the batch to be accepted")


def stored(api: httpx.Client, page: str) -> tuple[int, int]:
    sql = (
        "SELECT count(), uniqExact(event_id) FROM riverbed.events_pageviews FINAL "
        f"WHERE page = '{page}'"
    )
    response = api.post("/v1/query", json={"sql": sql}, timeout=15)
    response.raise_for_status()
    rows = response.json()["rows"][0]
    return int(rows[0]), int(rows[1])


def counted(api: httpx.Client, page: str) -> int:
    """Events of ``page`` in its windows' aggregates in ClickHouse (each window's kept row)."""
    sql = (
        "SELECT sum(count) FROM riverbed.metrics FINAL WHERE stream = 'pageviews' "
        f"AND field = '*' AND `group` = '{page}'"
    )
    try:
        response = api.post("/v1/query", json={"sql": sql}, timeout=15)
        return int(response.json()["rows"][0][0]) if response.status_code == 200 else -1
    except httpx.HTTPError:
        return -1


def stored_once(api: httpx.Client, page: str, count: int) -> bool:
    """Are all ``count`` events of ``page`` stored, once each? False while the API restarts."""
    try:
        return stored(api, page) == (count, count)
    except httpx.HTTPError:
        return False


def test_valkey_killed_mid_stream_loses_no_accepted_event(tmp_path: Path) -> None:
    kafka = start_kafka(tmp_path)
    valkey = start_redis(tmp_path)
    port = int(valkey.url.rsplit(":", 1)[1].split("/")[0])
    env = {"KAFKA_BOOTSTRAP": kafka.url, "REDIS_URL": valkey.url, "RIVERBED_LOG_LEVEL": "ERROR"}
    supervisor, base = start_components(tmp_path, env, PIPELINE_COMPONENTS, interval=0.2)
    api = api_client(base, admin_key(tmp_path))
    page = f"/fault-valkey-{uuid.uuid4().hex[:8]}"
    before, during = page_views(page, 300), page_views(page, 600)[300:]
    try:
        post_until_accepted(api, before)
        valkey.process.kill()
        valkey.process.wait(10)
        # Whatever the API answers while Redis is gone, the producer retries until 202; the
        # agents meet the outage in the middle of those batches and crash.
        api.post("/v1/streams/pageviews/events", json=during, timeout=15)
        wait_until(
            lambda: any(c.name == "agents" and c.history for c in supervisor.children),
            60,
            message="the agents to meet the outage",
        )
        valkey = start_redis(tmp_path, port)  # same port, same AOF: an operator's restart
        post_until_accepted(api, during)
        wait_until(
            lambda: stored(api, page) == (600, 600),
            120,
            message=f"all 600 events stored once (have {stored(api, page)})",
        )
        letters = api.get("/v1/streams/pageviews/dlq", timeout=15).json()
        assert letters["counts"] == {}, letters
    finally:
        supervisor.stop()
        valkey.stop()
        kafka.stop()


def engine_pid(up: RiverbedUp, name: str) -> int:
    """The pid of the engine listening on the port ``riverbed up`` printed for ``name``
    (valkey rewrites its command line and environment, so the port is what names it)."""
    line = next(line for line in up.lines if line.strip().startswith(name))
    port = re.search(r":(\d+)", line).group(1)  # type: ignore[union-attr]
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if entry.name.isdigit() and f"127.0.0.1:{port}" in cmdline and "cli" not in cmdline:
            return int(entry.name)
    raise AssertionError(f"no process listening as {name} on port {port}")


def component_pids(data_dir: Path, name: str) -> list[int]:
    """Pids of ``riverbed run NAME`` processes of the stack in ``data_dir``."""
    return [
        pid
        for pid in processes_using(data_dir)
        if f"run\0{name}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_killed_engines_restart_and_a_broker_killed_mid_stream_loses_no_accepted_event(
    tmp_path: Path,
) -> None:
    """valkey is SIGKILLed and comes back on its AOF. Then a producer posts 30 batches with
    retries (same event ids) while the broker is SIGKILLed after the tenth. The agents are
    paused until then, so that the broker holds the only copy (in memory) of what it
    acknowledged: every event is stored once, from the journal the API replays, and every
    window counts it once."""
    data_dir = tmp_path / "data"
    up = RiverbedUp(data_dir, free_port(), demo=False)
    try:
        up.wait_up()
        api = api_client(up.base, admin_key(data_dir))
        early = f"/journal-early-{uuid.uuid4().hex[:8]}"
        post_until_accepted(api, page_views(early, 200))
        wait_until(lambda: stored(api, early) == (200, 200), 60, message="the early events")
        os.kill(engine_pid(up, "redis"), signal.SIGKILL)
        wait_until(
            lambda: any("redis (valkey) restarted" in line for line in up.lines),
            30,
            message="valkey to be restarted",
        )
        agents = component_pids(data_dir, "agents")
        assert agents
        for pid in agents:
            os.kill(pid, signal.SIGSTOP)
        page = f"/journal-{uuid.uuid4().hex[:8]}"
        events = page_views(page, 3000)
        batches = [events[at : at + 100] for at in range(0, len(events), 100)]
        accepted: list[int] = []

        def produce() -> None:
            for index, batch in enumerate(batches):
                post_until_accepted(api, batch, timeout=180)
                accepted.append(index)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        wait_until(lambda: len(accepted) >= 10, 60, message="ten batches accepted")
        os.kill(engine_pid(up, "kafka"), signal.SIGKILL)
        for pid in agents:
            os.kill(pid, signal.SIGCONT)
        wait_until(
            lambda: any("kafka (tansu) restarted" in line for line in up.lines),
            30,
            message="tansu to be restarted",
        )
        producer.join(240)
        assert len(accepted) == len(batches)
        wait_until(lambda: stored_once(api, page, 3000), 180, message="all 3000 stored once")
        assert stored(api, early) == (200, 200)
        # The flow started over on the new broker: its windows were computed again from the
        # journal, the early events' included, and count every event once.
        wait_until(lambda: counted(api, page) == 3000, 60, message="the windows' counts")
        assert counted(api, early) == 200
        ready = wait_until(
            lambda: (r := api.get("/readyz", timeout=10)).status_code == 200 and r.json(),
            60,
            message="readiness after the restarts",
        )
        restarts = ready["engine_restarts"]
        assert restarts["redis"]["restarts"] == 1 and restarts["kafka"]["restarts"] == 1
        assert restarts["kafka"]["last_exit_code"] == -signal.SIGKILL
        assert any("replays the journal of accepted events" in line for line in up.lines)
        journal = ready["journal"]
        assert journal["replayed_at_start"] >= 1200, journal  # the early events, ten batches
        letters = api.get("/v1/streams/pageviews/dlq", timeout=15).json()
        assert letters["counts"] == {}, letters
    finally:
        assert up.stop() == 0, up.output
    assert processes_using(data_dir) == []


def test_a_stop_without_drain_loses_nothing_after_the_next_up(tmp_path: Path) -> None:
    """A second Ctrl-C skips the drain: the broker goes with what it held (events and
    reference entries). The next ``riverbed up`` on the same data dir refills it from the
    journal."""
    data_dir = tmp_path / "data"
    port = free_port()
    up = RiverbedUp(data_dir, port, demo=False)
    page = f"/journal-restart-{uuid.uuid4().hex[:8]}"
    try:
        up.wait_up()
        api = api_client(up.base, admin_key(data_dir))
        for pid in component_pids(data_dir, "agents"):
            os.kill(pid, signal.SIGSTOP)  # nothing gets past the broker
        events = page_views(page, 1000)
        answer = api.post("/v1/streams/pageviews/events", json=events)
        assert answer.status_code == 202, answer.text
        for key, category in (("kept", "tools"), ("gone", "toys")):
            api.put(f"/v1/reference/products/{key}", json={"category": category}).raise_for_status()
        assert api.delete("/v1/reference/products/gone").status_code == 204
    finally:
        os.killpg(up.process.pid, signal.SIGINT)
        wait_until(lambda: "draining" in up.output, 30, message="the drain to start")
        os.killpg(up.process.pid, signal.SIGINT)  # the impatient second Ctrl-C
        for pid in component_pids(data_dir, "agents"):
            os.kill(pid, signal.SIGCONT)
        assert up.process.wait(90) == 0, up.output
    assert "drain skipped" in up.output
    again = RiverbedUp(data_dir, port, demo=False)
    try:
        again.wait_up()
        api = api_client(again.base, admin_key(data_dir))
        wait_until(lambda: stored_once(api, page, 1000), 180, message="all 1000 stored once")
        wait_until(lambda: counted(api, page) == 1000, 60, message="the windows' counts")
        # Reference entries were in the dead broker's compacted topic only, and the journal.
        kept = wait_until(
            lambda: (r := api.get("/v1/reference/products/kept")).status_code == 200 and r,
            60,
            message="the reference entry back",
        )
        assert kept.json()["attributes"]["category"] == "tools"
        assert api.get("/v1/reference/products/gone").status_code == 404
    finally:
        assert again.stop() == 0, again.output
    assert processes_using(data_dir) == []
