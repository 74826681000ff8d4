"""End-to-end benchmark of the running pipeline: ingest rate, rate into ClickHouse, latencies.

    python -m bench.pipeline                 # starts its own embedded stack in a temp dir
    python -m bench.pipeline --url URL       # drives an already running `riverbed up`
                                             # (key: --key, or .riverbed/admin.key)

Prints HTTP ingest events/s (batched, concurrent clients), end-to-end events/s until every
event is queryable in ClickHouse, p50/p99 latency from POST to visible in ClickHouse and from
POST to the SSE update that includes the event, and the memory (RSS) of each process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.drain import status_mb
from bench.workload import now_ms
from control.bootstrap import ADMIN_KEY_FILE, ensure_admin_key
from control.keys import key_store
from riverbed.core.settings import Settings
from riverbed.embedded import free_port, start_clickhouse, start_kafka, start_redis, wait_for
from riverbed.supervisor import Supervisor


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def embedded_stack(
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[str, dict[str, int], dict[str, str], dict[str, str]]]:
    """Engines + pipeline processes in a temp dir; yields the base URL, process pids, the
    headers that authenticate (an admin key, minted as `riverbed up` mints it) and the
    environment the processes were given (the engines' URLs)."""
    with tempfile.TemporaryDirectory(prefix="riverbed-bench-") as tmp:
        data_dir = Path(tmp)
        kafka, redis = start_kafka(data_dir), start_redis(data_dir)
        clickhouse = start_clickhouse(data_dir)
        port = free_port()
        env = {
            "KAFKA_BOOTSTRAP": kafka.url,
            "REDIS_URL": redis.url,
            "CLICKHOUSE_URL": clickhouse.url,
            "RIVERBED_DATA_DIR": str(data_dir),
            "RIVERBED_API_PORT": str(port),
            **(extra_env or {}),
        }
        admin = ensure_admin_key(key_store(Settings(data_dir=data_dir)), data_dir, force=True)
        assert admin is not None
        supervisor = Supervisor(data_dir / "logs", env)
        for component in ("api", "agents", "flow", "sink-redis", "sink-clickhouse"):
            supervisor.add(component)
        base = f"http://127.0.0.1:{port}"
        try:
            ready = wait_for(lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200, 120)
            if not ready:
                raise SystemExit(f"the stack did not become ready; logs in {data_dir / 'logs'}")
            pids = {c.name: c.process.pid for c in supervisor.children if c.process}
            pids |= {
                "tansu": kafka.process.pid,
                "valkey": redis.process.pid,
                "clickhouse": clickhouse.process.pid,
            }
            yield base, pids, {"Authorization": f"Bearer {admin.key}"}, env
        finally:
            supervisor.stop()
            clickhouse.stop()
            redis.stop()
            kafka.stop()


def page_view(page: str, i: int) -> dict[str, Any]:
    return {"user_id": f"u{i % 997}", "page": page, "load_ms": float(i % 500), "ts": now_ms()}


async def ingest_throughput(
    base: str, headers: dict[str, str], total: int, batch: int, clients: int, page: str
) -> float:
    """Post ``total`` events in batches from ``clients`` concurrent connections; events/s."""
    batches = [
        [page_view(page, i) for i in range(s, min(s + batch, total))]
        for s in range(0, total, batch)
    ]
    queue: asyncio.Queue[list[dict]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            events = queue.get_nowait()
            response = await client.post("/v1/streams/pageviews/events", json=events)
            if response.status_code != 202:
                raise SystemExit(f"ingest failed: {response.status_code} {response.text[:300]}")

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return total / (time.perf_counter() - started)


def count_in_clickhouse(base: str, headers: dict[str, str], page: str) -> int:
    sql = f"SELECT count() FROM riverbed.events_pageviews WHERE page = '{page}'"
    response = httpx.post(f"{base}/v1/query", headers=headers, json={"sql": sql}, timeout=30)
    response.raise_for_status()
    return int(response.json()["rows"][0][0])


class SseWatcher:
    """Records when the first SSE update for each probe group arrives."""

    def __init__(self, base: str, headers: dict[str, str], prefix: str) -> None:
        self.url = f"{base}/v1/live/metrics?stream=pageviews&field=*"
        self.headers = headers
        self.prefix = prefix
        self.first_seen: dict[str, int] = {}
        self.connected = threading.Event()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            with (
                httpx.Client(headers=self.headers, timeout=None) as client,
                client.stream("GET", self.url) as response,
            ):
                self.connected.set()
                for line in response.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith("data:"):
                        group = json.loads(line[5:]).get("group")  # updates, not `ready`
                        if (
                            isinstance(group, str)
                            and group.startswith(self.prefix)
                            and group not in self.first_seen
                        ):
                            self.first_seen[group] = now_ms()
        except httpx.HTTPError:
            if not self.stop.is_set():
                raise


def latency_probes(
    base: str, headers: dict[str, str], probes: int, rate: float
) -> tuple[list[float], list[float]]:
    """One event per probe group, ``rate`` per second; returns (ClickHouse ms, SSE ms) lists."""
    prefix = f"/probe/{uuid.uuid4().hex[:6]}/"
    sse = SseWatcher(base, headers, prefix)
    if not sse.connected.wait(30):
        raise SystemExit("SSE stream did not open")
    sent: dict[str, int] = {}
    visible: dict[str, int] = {}
    done = threading.Event()

    def poll_clickhouse() -> None:
        sql = f"SELECT page FROM riverbed.events_pageviews WHERE startsWith(page, '{prefix}')"
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            while not done.is_set():
                rows = client.post("/v1/query", json={"sql": sql}).json()["rows"]
                stamp = now_ms()
                for (page,) in rows:
                    visible.setdefault(page, stamp)
                if len(visible) >= probes:
                    return
                time.sleep(0.02)  # polling period of the measurement, not a synchronisation

    poller = threading.Thread(target=poll_clickhouse, daemon=True)
    poller.start()
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(probes):
            page = f"{prefix}{i}"
            sent[page] = now_ms()
            response = client.post("/v1/streams/pageviews/events", json=page_view(page, i))
            response.raise_for_status()
            time.sleep(1 / rate)  # pacing of the probe traffic
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(visible) < probes or len(sse.first_seen) < probes):
        time.sleep(0.1)
    done.set()
    sse.stop.set()
    ch = [float(visible[p] - sent[p]) for p in sent if p in visible]
    live = [float(sse.first_seen[p] - sent[p]) for p in sent if p in sse.first_seen]
    return ch, live


def run(
    base: str,
    headers: dict[str, str],
    pids: dict[str, int],
    total: int,
    batch: int,
    clients: int,
    probes: int,
) -> dict[str, Any]:
    page = f"/bench/{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    ingest_rate = asyncio.run(ingest_throughput(base, headers, total, batch, clients, page))
    while count_in_clickhouse(base, headers, page) < total:
        if time.perf_counter() - started > 600:
            raise SystemExit("events did not all reach ClickHouse within 10 minutes")
        time.sleep(0.1)
    e2e_rate = total / (time.perf_counter() - started)
    ch, live = latency_probes(base, headers, probes, rate=10)
    return {
        "events": total,
        "batch": batch,
        "clients": clients,
        "ingest_events_per_s": round(ingest_rate),
        "end_to_end_events_per_s": round(e2e_rate),
        "post_to_clickhouse_ms": {
            "p50": percentile(ch, 0.5),
            "p99": percentile(ch, 0.99),
            "n": len(ch),
        },
        "post_to_sse_ms": {
            "p50": percentile(live, 0.5),
            "p99": percentile(live, 0.99),
            "n": len(live),
        },
        "rss_mb": {name: round(status_mb(pid, "VmRSS")) for name, pid in pids.items()},
    }


def journal_ceiling(events: int, batch: int) -> float:
    """Events/s the journal alone takes (encode, write, fsync; 8 writers), on this disk."""
    from riverbed.core.journal import Journal, JournalRecord, JournalWriter

    value = json.dumps(page_view("/ceiling", 1)).encode()
    records = [
        JournalRecord("events.pageviews", b"u1", value, f"e{i}", now_ms()) for i in range(batch)
    ]

    async def write_all(writer: JournalWriter) -> None:
        queue = list(range(0, events, batch))

        async def one() -> None:
            while queue:
                queue.pop()
                await writer.write(records)

        await asyncio.gather(*(one() for _ in range(8)))

    with tempfile.TemporaryDirectory(prefix="riverbed-journal-") as tmp:
        writer = JournalWriter(Journal(Path(tmp)))
        started = time.perf_counter()
        asyncio.run(write_all(writer))
        elapsed = time.perf_counter() - started
        writer.close()
    return events / elapsed


def compare_journal(args: argparse.Namespace) -> int:
    """One stack without the journal, one with it, the same load; and the journal alone."""
    rows = []
    for label, env in (("off", {}), ("on", {"RIVERBED_JOURNAL": "true"})):
        with embedded_stack(env) as (base, pids, headers, _):
            result = run(base, headers, pids, args.events, args.batch, args.clients, args.probes)
        rows.append((label, result))
    ceiling = journal_ceiling(args.events, args.batch)
    print(f"\n{'journal':<8} {'ingest ev/s':>12} {'POST->CH p50':>13} {'p99':>7}")
    for label, result in rows:
        lat = result["post_to_clickhouse_ms"]
        print(
            f"{label:<8} {result['ingest_events_per_s']:>12} {lat['p50']:>10.0f} ms "
            f"{lat['p99']:>4.0f} ms"
        )
    print(f"journal alone (encode + write + fsync, 8 writers): {ceiling:,.0f} events/s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="base URL of a running Riverbed (default: start one)")
    parser.add_argument(
        "--key", help="API key for --url (default: RIVERBED_API_KEY, or .riverbed/admin.key)"
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument(
        "--journal",
        choices=("off", "on", "both"),
        default="off",
        help="the ingest journal (riverbed up turns it on); both: one stack each, compared",
    )
    args = parser.parse_args(argv)
    if args.url:
        key = args.key or os.environ.get("RIVERBED_API_KEY")
        key = key or (Settings().data_dir / ADMIN_KEY_FILE).read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        result = run(args.url, headers, {}, args.events, args.batch, args.clients, args.probes)
    elif args.journal == "both":
        return compare_journal(args)
    else:
        env = {"RIVERBED_JOURNAL": "true"} if args.journal == "on" else {}
        with embedded_stack(env) as (base, pids, headers, _):
            result = run(base, headers, pids, args.events, args.batch, args.clients, args.probes)
    result["machine"] = f"{os.cpu_count()} cores, python {sys.version.split()[0]}"
    print(json.dumps(result, indent=2))
    print(
        f"\ningest            {result['ingest_events_per_s']:>8} events/s "
        f"({args.batch}/request, {args.clients} clients)"
    )
    print(f"end-to-end (CH)   {result['end_to_end_events_per_s']:>8} events/s")
    for label, key in (
        ("POST->ClickHouse", "post_to_clickhouse_ms"),
        ("POST->SSE", "post_to_sse_ms"),
    ):
        lat = result[key]
        print(f"{label:<17} p50 {lat['p50']:>6.0f} ms   p99 {lat['p99']:>6.0f} ms   (n={lat['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
