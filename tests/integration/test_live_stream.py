"""The live SSE response over HTTP, from a real API process: a client that goes away gives its
place back, idle streams get heartbeats, and stopping the API ends every stream with a
``shutdown`` event instead of keeping the process waiting for its viewers."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from riverbed.supervisor import Supervisor
from tests.conftest import Engines, admin_key, bearer, start_components
from tests.helpers.sse import Message, messages
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.integration
PER_CALLER = 3


@pytest.fixture(scope="module")
def stack(
    engines: Engines, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Supervisor]]:
    data_dir = tmp_path_factory.mktemp("live-stream")
    env = {
        "KAFKA_BOOTSTRAP": engines.kafka.url,
        "REDIS_URL": engines.redis.url,
        "RIVERBED_LIVE_CONNECTIONS_PER_CALLER": str(PER_CALLER),
        "RIVERBED_SSE_HEARTBEAT_SECONDS": "0.5",
    }
    supervisor, base = start_components(data_dir, env, ["api"], timeout=90)
    try:
        yield base, admin_key(data_dir), supervisor
    finally:
        supervisor.stop()


@pytest.fixture()
def api(stack: tuple[str, str, Supervisor]) -> tuple[str, str]:
    return stack[0], stack[1]


def open_stream(base: str, key: str) -> socket.socket:
    """A live connection on a plain socket, read up to its ``ready`` message."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"GET /v1/live/metrics HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    received = b""
    while b"event: ready" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock


def status_of_another(base: str, key: str) -> int:
    with httpx.stream(
        "GET", f"{base}/v1/live/metrics", headers=bearer(key), timeout=10
    ) as response:
        return response.status_code


def test_a_client_that_goes_away_gives_its_place_back(api: tuple[str, str]) -> None:
    base, key = api
    held = [open_stream(base, key) for _ in range(PER_CALLER)]
    assert status_of_another(base, key) == 429
    for sock in held:
        sock.close()
    # Nothing is read from or written to the closed streams: the server notices the
    # disconnect itself and releases the caller's places.
    wait_until(lambda: status_of_another(base, key) == 200, timeout=10)


def test_an_idle_stream_gets_heartbeats(api: tuple[str, str]) -> None:
    base, key = api
    sock = open_stream(base, key)
    try:
        received = b""
        deadline = time.monotonic() + 10
        while received.count(b": ping\n\n") < 2:
            assert time.monotonic() < deadline, received
            received += sock.recv(65536)
    finally:
        sock.close()


def test_stopping_the_api_ends_its_streams_with_a_shutdown_event(
    engines: Engines, tmp_path: Path
) -> None:
    env = {"KAFKA_BOOTSTRAP": engines.kafka.url, "REDIS_URL": engines.redis.url}
    supervisor: Supervisor
    supervisor, base = start_components(tmp_path, env, ["api"], timeout=90)
    try:
        process = next(c.process for c in supervisor.children if c.process is not None)
        with httpx.stream(
            "GET", f"{base}/v1/live/metrics", headers=bearer(admin_key(tmp_path)), timeout=20
        ) as response:
            stream = messages(response)
            assert next(m for m in stream if m.event == "ready")
            process.terminate()
            rest = list(stream)  # ends when the server closes the stream
        assert [m.event for m in rest] == ["shutdown"]
        assert "reconnect" in rest[0].json()["reason"]
        assert process.wait(timeout=15) is not None
    finally:
        supervisor.stop()


def test_the_live_page_is_served_from_this_origin_under_the_strict_policy(
    api: tuple[str, str],
) -> None:
    base, _ = api
    page = httpx.get(f"{base}/live/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert '<script src="live.js"' in page.text  # no inline script: the policy forbids them
    script = httpx.get(f"{base}/live/live.js", timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    # What producers send (group names, stream names) reaches the page as text, never markup,
    # and the page talks to its own origin only.
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert "http://" not in script.text and "https://" not in script.text
    assert "new EventSource(" in script.text and "last_event_id" in script.text


def test_the_status_channel_shows_processes_then_their_starts_and_crashes(
    stack: tuple[str, str, Supervisor],
) -> None:
    base, key, supervisor = stack
    url = f"{base}/v1/live/status?component=sink-redis"
    with httpx.stream("GET", f"{base}/v1/live/status", headers=bearer(key), timeout=30) as r:
        first = list(itertools.takewhile(lambda m: m.event != "ready", messages(r)))
    assert "api" in {m.json()["component"] for m in first if m.event == "snapshot"}
    with httpx.stream("GET", url, headers=bearer(key), timeout=60) as response:
        stream = messages(response)
        assert next(m for m in stream if m.event == "ready")
        child = supervisor.add("sink-redis")
        assert child.process is not None
        pid = child.process.pid

        def ours(message: Message) -> bool:
            return message.event == "status" and message.json()["process"].endswith(f":{pid}")

        started = next(m for m in stream if ours(m))
        assert started.json()["state"] == "started" and started.id
        os.kill(pid, signal.SIGKILL)
        crashed = next(m for m in stream if m.json().get("state") == "crashed")
    assert crashed.json()["component"] == "sink-redis"
    assert crashed.json()["code"] == -signal.SIGKILL
