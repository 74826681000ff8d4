"""POST -> SSE latency under load: how soon a dashboard sees a posted event.

Starts the embedded stack, posts a steady background load (``--rate`` events/s, in batches
every 20 ms, spread over ``--groups`` pages), and meanwhile ``--probes`` probe events, one per
probe group, ten a second. A dashboard follows ``/v1/live/metrics`` for the stream; a probe's
latency is from just before its POST to the first update of its group on the stream. Prints
p50/p99, the floor (POST -> 202, durable in Kafka), and what running values cost: metric
updates written per second and the CPU of the flow and the Redis sink over the run.

    .venv/bin/python -m bench.live_latency --rate 1000 --emit-interval 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast

import httpx
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.pipeline import embedded_stack, percentile
from bench.workload import now_ms
from riverbed.core.topology import LIVE_CHANNEL
from schemas import codec
from schemas.registry import SchemaRegistry

STREAM_URL = "/v1/streams/pageviews/events"
LIVE_PATH = ("tansu", "agents", "flow", "sink-redis", "valkey")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def cpu_used(pids: dict[str, int], before: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each of ``before``'s processes used since its reading ``before``."""
    return {n: (cpu_seconds(pids[n]) - before[n]) / seconds for n in before}


def event(page: str, i: int) -> dict[str, Any]:
    return {"user_id": f"u{i % 997}", "page": page, "load_ms": float(i % 500), "ts": now_ms()}


async def background(client: httpx.AsyncClient, rate: int, groups: int, stop: asyncio.Event) -> int:
    """``rate`` events/s until ``stop``; returns how many were accepted."""
    per_tick = max(1, rate // 50)
    sent = 0
    next_at = time.monotonic()
    while not stop.is_set():
        batch = [event(f"/load/{(sent + k) % groups}", sent + k) for k in range(per_tick)]
        response = await client.post(STREAM_URL, json=batch)
        if response.status_code != 202:
            raise SystemExit(f"ingest failed: {response.status_code} {response.text[:300]}")
        sent += per_tick
        next_at += 0.02
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing of the load
    return sent


async def watch(
    base: str, headers: dict[str, str], prefix: str, seen: dict[str, float], ready: asyncio.Event
) -> None:
    """Follow the stream's live metrics; stamp the first update of each probe group."""
    url = f"{base}/v1/live/metrics?stream=pageviews&field=*"
    async with (
        httpx.AsyncClient(headers=headers, timeout=None) as client,
        client.stream("GET", url) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("event: ready"):
                ready.set()
            elif line.startswith("data:") and prefix in line:
                group = json.loads(line[5:])["group"]
                seen.setdefault(group, time.time() * 1000)


async def measure(
    base: str, headers: dict[str, str], rate: int, groups: int, probes: int, warm_up: float
) -> dict[str, Any]:
    prefix = f"/probe/{uuid.uuid4().hex[:6]}/"
    seen: dict[str, float] = {}
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch(base, headers, prefix, seen, ready))
    await asyncio.wait_for(ready.wait(), 30)
    stop = asyncio.Event()
    sent: dict[str, float] = {}
    accepted: list[float] = []
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as load_client,
        httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as probe_client,
    ):
        load = asyncio.create_task(background(load_client, rate, groups, stop))
        # Warm-up: the agents work off what arrived while they joined their group, windows
        # open, the flow runs at the load's pace. Probes before that measure start-up.
        await asyncio.sleep(warm_up)
        for i in range(probes):
            page = f"{prefix}{i}"
            sent[page] = time.time() * 1000
            response = await probe_client.post(STREAM_URL, json=event(page, i))
            accepted.append(time.time() * 1000 - sent[page])
            response.raise_for_status()
            await asyncio.sleep(0.1)  # ten probes a second
        deadline = time.monotonic() + 30
        while len(seen) < probes and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        total = await load
    watcher.cancel()
    delays = [seen[p] - sent[p] for p in sent if p in seen]
    return {
        "events": total,
        "sse_ms": delays,
        "accepted_ms": accepted,
        "missing": probes - len(delays),
        "sent": sent,
        "seen": seen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="background events/s")
    parser.add_argument("--groups", type=int, default=50, help="pages the load spreads over")
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds of CPU measured before the load"
    )
    parser.add_argument("--emit-interval", type=float, help="live_emit_interval_seconds")
    parser.add_argument(
        "--warm-up", type=float, default=10.0, help="seconds of load before the first probe"
    )
    args = parser.parse_args()
    env = {"RIVERBED_RATE_LIMITS": "false", "RIVERBED_LOG_LEVEL": "WARNING"}
    if args.emit_interval is not None:
        env["RIVERBED_LIVE_EMIT_INTERVAL_SECONDS"] = str(args.emit_interval)
    with embedded_stack(env) as (base, pids, headers, stack_env):
        log = redis.Redis.from_url(stack_env["REDIS_URL"])
        # What the live path costs with nothing to carry: its consumers' empty fetches.
        idle_before = {n: cpu_seconds(pids[n]) for n in LIVE_PATH}
        time.sleep(args.idle)  # the idle span measured, not a wait for anything
        idle = cpu_used(pids, idle_before, args.idle)
        cpu_before = {n: cpu_seconds(pids[n]) for n in LIVE_PATH}
        added_before = _entries_added(log)
        started = time.monotonic()
        result = asyncio.run(
            measure(base, headers, args.rate, args.groups, args.probes, args.warm_up)
        )
        elapsed = time.monotonic() - started
        cpu = cpu_used(pids, cpu_before, elapsed)
        updates = (_entries_added(log) - added_before) / elapsed
        hops, slow = breakdown(
            stack_env["KAFKA_BOOTSTRAP"], log, result["sent"], result["seen"], args.warm_up * 1000
        )
    sse, floor = result["sse_ms"], result["accepted_ms"]
    emit = args.emit_interval if args.emit_interval is not None else "default"
    print(
        f"load: {result['events'] / elapsed:,.0f} events/s over {elapsed:.0f} s, emit {emit}, "
        f"probes after {args.warm_up:.0f} s of load"
    )
    print(
        f"POST -> SSE update: p50 {percentile(sse, 0.5):.0f} ms, p99 {percentile(sse, 0.99):.0f}"
        f" ms, max {max(sse):.0f} ms (n={len(sse)}, missing {result['missing']})"
    )
    print(
        f"floor, POST -> 202 (durable): p50 {percentile(floor, 0.5):.1f} ms, "
        f"p99 {percentile(floor, 0.99):.1f} ms"
    )
    print(
        f"cost: {updates:,.0f} metric updates/s written; CPU (cores) under load: "
        + ", ".join(f"{n} {cpu[n]:.2f}" for n in LIVE_PATH)
    )
    print(
        f"idle ({args.idle:.0f} s before the load), CPU (cores): "
        + ", ".join(f"{n} {idle[n]:.3f}" for n in LIVE_PATH)
    )
    print("where the time goes (each hop's p50 / p99, ms; Kafka record timestamps):")
    for name, samples in hops.items():
        if samples:
            print(f"  {name:<38} {percentile(samples, 0.5):7.0f} {percentile(samples, 0.99):7.0f}")
    every = hops["raw -> clean, every event after warm-up"]
    if every:
        print(
            f"agents, every event: p99.9 {percentile(every, 0.999):.0f} ms, max {max(every):.0f}"
            f" ms, over 200 ms: {sum(d > 200 for d in every)} of {len(every)}"
        )
        print(
            "  events over 200 ms, by second of the run: "
            + ", ".join(f"{second}s: {count}" for second, count in sorted(slow.items()))
        )


def breakdown(
    bootstrap: str,
    log: redis.Redis,
    sent: dict[str, float],
    seen: dict[str, float],
    warm_up_ms: float,
) -> tuple[dict[str, list[float]], Counter[int]]:
    """Per probe, when each stage wrote it: the raw event (API), the clean event (agents), its
    group's first metric record (flow), its first live-log entry (Redis sink), and the SSE
    receipt; the differences are the hops. Also how many events of the load took the agents
    over 200 ms, by second of the run."""
    registry = SchemaRegistry(log)
    stamps: dict[str, dict[str, float]] = {page: {"post": at} for page, at in sent.items()}
    every: dict[str, dict[str, float]] = {"raw": {}, "clean": {}}  # event id -> timestamp

    def read(topic: str, name: str, page_of: Any) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        quiet = 0
        while quiet < 20:
            batch = consumer.consume(5000, 0.1)
            quiet = quiet + 1 if not batch else 0
            for message in batch:
                value = message.value()
                if message.error() or not value:
                    continue
                record = codec.decode(registry, value)[1]
                stamp = float(message.timestamp()[1])
                if name in every and record.get("event_id"):
                    every[name].setdefault(record["event_id"], stamp)
                page = page_of(record)
                if page in stamps:
                    stamps[page].setdefault(name, stamp)
        consumer.close()

    read("events.pageviews", "raw", lambda r: r.get("page"))
    read("clean.pageviews", "clean", lambda r: r.get("page"))
    read("metrics", "metric", lambda r: r.get("group") if r.get("field") == "*" else None)
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], log.xrange(LIVE_CHANNEL))
    for entry_id, fields in entries:
        update = json.loads(fields[b"u"])
        if update.get("field") == "*" and update.get("group") in stamps:
            stamps[update["group"]].setdefault("log", float(entry_id.split(b"-")[0]))
    for page, at in seen.items():
        stamps[page]["sse"] = at
    order = ["post", "raw", "clean", "metric", "log", "sse"]
    names = {
        "raw": "POST -> raw event in Kafka (API)",
        "clean": "raw -> clean event (agents)",
        "metric": "clean -> metric record (flow)",
        "log": "metric -> live log (Redis sink)",
        "sse": "live log -> SSE receipt (API hub)",
    }
    hops = {
        names[b]: [t[b] - t[a] for t in stamps.values() if a in t and b in t]
        for a, b in itertools.pairwise(order)
    }
    # The agents' hop for every event of the load, not only the probes: its tail, and in which
    # seconds of the run the slow events were posted, to tell a period from a burst.
    first = min(every["raw"].values(), default=0.0)
    pairs = [
        (every["clean"][e] - at, (at - first) / 1000)
        for e, at in every["raw"].items()
        if e in every["clean"] and at - first >= warm_up_ms
    ]
    hops["raw -> clean, every event after warm-up"] = [delay for delay, _ in pairs]
    return hops, Counter(int(at_s) for delay, at_s in pairs if delay > 200)


def _entries_added(client: redis.Redis) -> int:
    try:
        return int(client.xinfo_stream(LIVE_CHANNEL)["entries-added"])
    except redis.ResponseError:
        return 0


if __name__ == "__main__":
    main()
