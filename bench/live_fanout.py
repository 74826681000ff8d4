"""How many live (SSE) clients one API process holds, what each costs, and how fast an update
reaches all of them.

Starts the embedded engines and one API process, opens ``--clients`` SSE connections to
``/v1/live/metrics`` (plain sockets, so the client side stays light), waits until each has its
``ready`` event, then writes ``--updates`` metric updates with the Redis sink's own code and
measures, per client and update, the time from the write to the receipt. Prints clients held,
the API process's memory per connection (RSS growth over the connections), and broadcast
latency p50/p99. The ceiling is a bare Redis XREAD of the same updates by one reader.

    .venv/bin/python -m bench.live_fanout --clients 10000 --updates 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import redis

from control.bootstrap import ensure_admin_key
from control.keys import key_store
from riverbed.core.settings import Settings
from riverbed.core.topology import LIVE_CHANNEL
from riverbed.embedded import free_port, start_clickhouse, start_kafka, start_redis, wait_for
from riverbed.supervisor import Supervisor
from schemas.registry import SchemaRegistry
from sinks.redis_writer import RedisMetricsWriter

GROUP = "bench"
FAILURES: dict[str, int] = {}  # why connections could not be opened, by exception
SAMPLES: dict[bytes, bytes] = {}  # a body of each refusal


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def update(n: int) -> dict:
    return {
        "stream": "pageviews",
        "field": "*",
        "group": GROUP,
        "window_start": n * 1000,
        "window_end": n * 1000 + 1000,
        "count": n,
        "sum": float(n),
        "min": None,
        "max": None,
        "avg": None,
        "final": False,
        "version": 1,
    }


def _fail(why: str) -> None:
    FAILURES[why] = FAILURES.get(why, 0) + 1


WINDOW_START = re.compile(rb'"window_start":\s*(\d+)')


class Client(asyncio.Protocol):
    """One SSE connection, kept cheap so the client side does not bound what is measured: it
    stamps the arrival of each chunk holding ``metric`` messages and counts ``ready``."""

    def __init__(self, request: bytes, on_ready: Callable[[], None]) -> None:
        self.request = request
        self.on_ready = on_ready
        self.received: dict[int, float] = {}
        self.head = b""  # what came before the first ready: the status line, a refusal
        self.ready = False
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        if not self.ready:
            self.head += data
            if b"event: ready" in self.head:
                self.ready = True
                self.on_ready()
            return
        if b"event: metric" in data:
            for found in WINDOW_START.finditer(data):
                self.received.setdefault(int(found.group(1)) // 1000, at)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready:
            status = self.head.split(b"\r\n", 1)[0].decode(errors="replace") or "nothing"
            _fail(f"closed after {status}")
            body = self.head.rpartition(b"\r\n\r\n")[2]
            if body:
                SAMPLES.setdefault(status.encode(), body[:300])
        if not self.closed.done():
            self.closed.set_result(None)


async def connect(port: int, client: Client) -> None:
    try:
        await asyncio.get_running_loop().create_connection(lambda: client, "127.0.0.1", port)
    except OSError as exc:
        _fail(type(exc).__name__)


async def measure(
    port: int, key: str, clients: int, updates: int, url: str, api_pid: int, interval: float
) -> tuple[int, int, list[float], int]:
    ready = asyncio.Event()
    count = [0]

    def one_ready() -> None:
        count[0] += 1
        if count[0] == clients:
            ready.set()

    request = (
        f"GET /v1/live/metrics?stream=pageviews&field=*&group={GROUP} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    before = rss_kib(api_pid)
    held = [Client(request, one_ready) for _ in range(clients)]
    tasks = []
    for start in range(0, clients, 500):  # open in waves: the listen backlog is finite
        for client in held[start : start + 500]:
            tasks.append(asyncio.create_task(connect(port, client)))
        await asyncio.sleep(0.05)
    started = time.monotonic()
    while not ready.is_set():  # a progress line every few seconds while clients connect
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 5)
        elapsed = time.monotonic() - started
        print(
            f"  {count[0]:,} of {clients:,} clients ready after {elapsed:.0f} s"
            + (f"; failed: {FAILURES} {SAMPLES}" if FAILURES else ""),
            flush=True,
        )
        if elapsed > 300:
            print(f"only {count[0]} of {clients} got ready within 300 s; failures: {FAILURES}")
            raise SystemExit(1)
    print(f"all ready in {time.monotonic() - started:.1f} s", flush=True)
    await asyncio.sleep(1.0)  # let the API settle before measuring its memory
    after = rss_kib(api_pid)
    sink_client = redis.Redis.from_url(url)
    sink = RedisMetricsWriter(sink_client, SchemaRegistry(sink_client), series_length=3)
    sent: dict[int, float] = {}
    for n in range(1, updates + 1):
        sent[n] = time.monotonic()
        await asyncio.to_thread(sink.apply, [update(n)])
        await asyncio.sleep(interval)  # the pace of updates: each goes to every client
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(len(c.received) >= updates for c in held):
            break
        await asyncio.sleep(0.1)
    delays = sorted(c.received[n] - sent[n] for c in held for n in sent if n in c.received)
    missing = clients * updates - len(delays)
    for client in held:
        if client.transport is not None:
            client.transport.close()
    return before, after, delays, missing


def ceiling(url: str, updates: int) -> list[float]:
    """One bare XREAD reader of the same kind of updates: the floor under any fan-out."""
    client = redis.Redis.from_url(url)
    sink = RedisMetricsWriter(client, SchemaRegistry(client), series_length=3)
    position = client.xinfo_stream(LIVE_CHANNEL)["last-generated-id"]
    delays = []
    reader = redis.Redis.from_url(url)
    for n in range(updates + 1000, updates * 2 + 1000):
        sent = time.monotonic()
        got: dict[str, Any] = {}

        def read(position: bytes = position, got: dict[str, Any] = got) -> None:
            answer: Any = reader.xread({LIVE_CHANNEL: position}, block=5000, count=1)
            got["at"] = time.monotonic()
            got["id"] = answer[0][1][0][0]

        thread = threading.Thread(target=read)
        thread.start()
        sink.apply([update(n)])
        thread.join(10)
        delays.append(got["at"] - sent)
        position = got["id"]
    return sorted(delays)


def pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between updates")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        kafka, valkey = start_kafka(data_dir), start_redis(data_dir)
        clickhouse = start_clickhouse(data_dir)
        port = free_port()
        key = ensure_admin_key(key_store(Settings(data_dir=data_dir)), data_dir, force=True)
        assert key is not None
        supervisor = Supervisor(
            data_dir / "logs",
            {
                "RIVERBED_DATA_DIR": str(data_dir),
                "RIVERBED_API_PORT": str(port),
                "KAFKA_BOOTSTRAP": kafka.url,
                "REDIS_URL": valkey.url,
                "CLICKHOUSE_URL": clickhouse.url,
                "RIVERBED_LIVE_CONNECTIONS_PER_CALLER": str(args.clients + 10),
                "RIVERBED_RATE_LIMITS": "false",
                "RIVERBED_LOG_LEVEL": "WARNING",
            },
            report=lambda line: None,
        )
        child = supervisor.add("api")
        try:
            ready = f"http://127.0.0.1:{port}/readyz"
            if not wait_for(lambda: httpx.get(ready, timeout=5).is_success, 120, interval=0.5):
                sys.exit("the API did not become ready")
            assert child.process is not None
            before, after, delays, missing = asyncio.run(
                measure(
                    port,
                    key.key,
                    args.clients,
                    args.updates,
                    valkey.url,
                    child.process.pid,
                    args.interval,
                )
            )
            floor = ceiling(valkey.url, args.updates)
        finally:
            supervisor.stop()
            clickhouse.stop()
            valkey.stop()
            kafka.stop()
    per_connection = (after - before) / args.clients
    print(f"clients held by one API process: {args.clients:,} (all got ready)")
    print(
        f"API RSS: {before / 1024:.0f} MiB idle, {after / 1024:.0f} MiB with the clients: "
        f"{per_connection:.1f} KiB per connection"
    )
    print(
        f"broadcast, write -> receipt, {args.updates} updates {args.interval} s apart x "
        f"{args.clients:,} clients: "
        f"p50 {pct(delays, 0.5):.1f} ms, p99 {pct(delays, 0.99):.1f} ms, "
        f"max {delays[-1] * 1000:.1f} ms, missing {missing}"
    )
    print(
        f"ceiling, one bare XREAD reader: p50 {pct(floor, 0.5):.2f} ms, "
        f"p99 {pct(floor, 0.99):.2f} ms"
    )
    print(f"(median of all: {statistics.median(delays) * 1000:.1f} ms; pid {os.getpid()})")


if __name__ == "__main__":
    main()
