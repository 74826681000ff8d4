"""The live hub (api.live.hub) on a real valkey: resume, reset, slow clients, fan-out, limits.

The log is written by the Redis sink's own code (:class:`sinks.redis_writer.RedisMetricsWriter`)
into a Redis database of this module's; the hub runs in the test's event loop, as in the API.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from api.live.hub import Hub, TooManyConnections
from api.live.stream import Message
from api.live.subscription import Subscription
from riverbed.core.topology import LIVE_CHANNEL
from schemas.registry import SchemaRegistry
from sinks.redis_writer import RedisMetricsWriter
from tests.conftest import Engines

pytestmark = pytest.mark.integration
DATABASE = 10


@pytest.fixture()
def url(engines: Engines) -> Iterator[str]:
    url = engines.redis.url.rsplit("/", 1)[0] + f"/{DATABASE}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


def writer(url: str, history: int = 50_000) -> RedisMetricsWriter:
    client = redis.Redis.from_url(url)
    return RedisMetricsWriter(client, SchemaRegistry(client), series_length=3, history=history)


def updates(stream: str, first: int, count: int) -> list[dict[str, Any]]:
    """``count`` updates, each of a window of its own, so each is applied and logged."""
    return [
        {
            "stream": stream,
            "field": "*",
            "group": "g",
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
        for n in range(first, first + count)
    ]


async def nothing() -> list[bytes | str]:
    return []


def everything(update: dict[str, Any]) -> bool:
    return True


async def take(events: Subscription, count: int, timeout: float = 10) -> list[Message]:
    """The next ``count`` events (fewer if the stream ends)."""
    taken: list[Message] = []

    async def read() -> None:
        async for event in events:
            taken.append(event)
            if len(taken) == count:
                return

    await asyncio.wait_for(read(), timeout)
    return taken


def test_reconnects_replay_exactly_what_was_missed_in_order(url: str) -> None:
    """1,000 reconnects at random points while updates keep coming: every update is received
    once, in order; none is lost, none repeated."""
    total = 3000
    sink = writer(url)

    async def scenario() -> list[int]:
        hub = Hub(aioredis.Redis.from_url(url), url)
        produced = asyncio.Event()

        async def produce() -> None:
            for first in range(0, total, 30):
                await asyncio.to_thread(sink.apply, updates("s", first, 30))
                await asyncio.sleep(0.002)
            produced.set()

        producer = asyncio.create_task(produce())
        received: list[int] = []
        last_id: str | None = None
        rng = random.Random(7)
        reconnects = 0
        try:
            events = await hub.follow(LIVE_CHANNEL, everything, nothing, None, "c")
            await take(events, 1)  # "ready": the position before any update
            await events.aclose()
            last_id = "0-0"
            while len(received) < total:
                events = await hub.follow(LIVE_CHANNEL, everything, nothing, last_id, "c")
                reconnects += 1
                want = rng.randint(1, 5) if reconnects <= 1000 else total - len(received)
                for event in await take(events, want, timeout=30):
                    assert event.event == "metric", event
                    received.append(json.loads(event.data)["count"])
                    last_id = event.id
                await events.aclose()  # the client goes away mid-stream
            await produced.wait()
        finally:
            producer.cancel()
            await hub.close()
        assert reconnects > 1000
        return received

    received = asyncio.run(scenario())
    assert received == list(range(total))


def test_a_gap_older_than_the_history_is_a_reset_then_a_snapshot(url: str) -> None:
    sink = writer(url, history=100)
    sink.apply(updates("s", 0, 5))
    first_id = redis.Redis.from_url(url).xrange(LIVE_CHANNEL, count=1)[0][0].decode()
    sink.apply(updates("s", 5, 2000))  # trims the log well past the first entries

    async def scenario() -> list[Message]:
        hub = Hub(aioredis.Redis.from_url(url), url)

        async def snapshot() -> list[bytes | str]:
            return [json.dumps({"stream": "s", "count": -1})]

        try:
            events = await hub.follow(LIVE_CHANNEL, everything, snapshot, first_id, "c")
            got = await take(events, 3)
            await events.aclose()
            return got
        finally:
            await hub.close()

    reset, snapshot, ready = asyncio.run(scenario())
    assert reset.event == "reset" and "no longer kept" in reset.data
    assert snapshot.event == "snapshot" and json.loads(snapshot.data)["count"] == -1
    assert ready.event == "ready" and ready.id


def test_a_slow_client_is_cut_while_a_fast_one_gets_everything(url: str) -> None:
    sink = writer(url)

    async def scenario() -> tuple[list[Message], list[Message]]:
        hub = Hub(aioredis.Redis.from_url(url), url, queue_size=10)
        try:
            fast = await hub.follow(LIVE_CHANNEL, everything, nothing, None, "fast")
            slow = await hub.follow(LIVE_CHANNEL, everything, nothing, None, "slow")
            await take(fast, 1)
            await take(slow, 1)  # both past "ready"; slow now stops reading
            fast_got: list[Message] = []
            for first in range(0, 100, 5):
                await asyncio.to_thread(sink.apply, updates("s", first, 5))
                fast_got += await take(fast, 5)
            slow_got = await take(slow, 100)  # what it had queued, then why it was cut
            await fast.aclose()
            return fast_got, slow_got
        finally:
            await hub.close()

    fast_got, slow_got = asyncio.run(scenario())
    assert [json.loads(e.data)["count"] for e in fast_got] == list(range(100))
    assert [e.event for e in slow_got] == ["metric"] * 10 + ["cut"]
    assert "Last-Event-ID" in slow_got[-1].data


def test_filters_apply_to_live_and_replayed_updates(url: str) -> None:
    sink = writer(url)

    async def scenario() -> list[str]:
        hub = Hub(aioredis.Redis.from_url(url), url)

        def only_b(update: dict[str, Any]) -> bool:
            return update["stream"] == "b"

        try:
            events = await hub.follow(LIVE_CHANNEL, only_b, nothing, None, "c")
            await take(events, 1)  # ready
            await asyncio.to_thread(sink.apply, updates("a", 0, 3) + updates("b", 0, 2))
            live = await take(events, 2)
            await events.aclose()
            await asyncio.to_thread(sink.apply, updates("a", 3, 3) + updates("b", 2, 2))
            again = await hub.follow(LIVE_CHANNEL, only_b, nothing, live[-1].id, "c")
            replayed = await take(again, 2)
            await again.aclose()
            return [json.loads(e.data)["stream"] for e in live + replayed]
        finally:
            await hub.close()

    assert asyncio.run(scenario()) == ["b"] * 4


def test_one_reader_per_log_serves_every_subscriber(url: str) -> None:
    """A thousand subscribers, one Redis connection reading the log for all of them."""
    sink = writer(url)

    async def scenario() -> tuple[int, int]:
        client = aioredis.Redis.from_url(url)
        hub = Hub(client, url, per_caller=2000)
        try:
            followers = [
                await hub.follow(LIVE_CHANNEL, everything, nothing, None, "c") for _ in range(1000)
            ]
            for events in followers:
                await take(events, 1)
            clients_before = await client.client_list()
            await asyncio.to_thread(sink.apply, updates("s", 0, 1))
            got = await asyncio.gather(*(take(events, 1) for events in followers))
            for events in followers:
                await events.aclose()
            # Connections of this test's database only: other tests' API processes may be
            # reading their own live logs in the same Redis.
            blocked = [
                c
                for c in clients_before
                if c.get("cmd") == "xread" and str(c.get("db")) == str(DATABASE)
            ]
            return sum(len(g) for g in got), len(blocked)
        finally:
            await hub.close()

    received, readers = asyncio.run(scenario())
    assert received == 1000
    assert readers == 1


def test_a_caller_past_its_connection_limit_is_refused(url: str) -> None:
    async def scenario() -> None:
        hub = Hub(aioredis.Redis.from_url(url), url, per_caller=2)
        try:
            one = await hub.follow(LIVE_CHANNEL, everything, nothing, None, "k")
            two = await hub.follow(LIVE_CHANNEL, everything, nothing, None, "k")
            with pytest.raises(TooManyConnections):
                await hub.follow(LIVE_CHANNEL, everything, nothing, None, "k")
            other = await hub.follow(LIVE_CHANNEL, everything, nothing, None, "other")
            await take(one, 1)
            await one.aclose()  # a connection ends: room for another
            three = await hub.follow(LIVE_CHANNEL, everything, nothing, None, "k")
            for events in (two, three, other):
                await take(events, 1)
                await events.aclose()
        finally:
            await hub.close()

    asyncio.run(scenario())
