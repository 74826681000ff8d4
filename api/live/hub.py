"""The live hub: one reader per live log and process, fanned out to every SSE client.

A live log is a Redis Stream the Redis sink appends every applied update to
(:mod:`sinks.redis_writer`); an entry's id (``<ms>-<seq>``) is the id of its SSE message. Per
API process and log, one task reads new entries (``XREAD BLOCK``, on a connection of its own)
and offers each to every subscriber's bounded queue, so ten thousand viewers cost one Redis
connection, not ten thousand.

A subscriber sees, in order and once each:

1. on a fresh connection, the current values (``snapshot`` events) and a ``ready`` event whose
   id is the log's position when they were read; on a reconnect with ``Last-Event-ID``, the
   entries it missed, replayed from the log (``XRANGE``);
2. then every new entry that matches its filters, live.

It registers its queue before reading the snapshot or the missed entries, so nothing appended
meanwhile falls between the two; entries it already had are skipped by id. When the log no
longer holds what a client missed (trimmed past its id, or a Redis that lost its data), the
client gets ``reset`` and a fresh snapshot instead of a silent gap. A client whose queue fills
(it reads slower than updates come) is cut with a ``cut`` event naming why, rather than slowing
the others or growing memory; it reconnects with its ``Last-Event-ID`` and catches up from the
log. If the reader loses Redis, every subscriber gets an ``error`` event and is closed, to
reconnect when Redis is back; when the API process stops, a ``shutdown`` event.

A fresh subscriber's ``ready`` id is the reader's own position (no Redis round trip), and the
subscribers that arrive at one position share one snapshot read (:mod:`api.live.snapshots`);
one timer wakes every subscriber for heartbeats. A crowd reconnecting at once then costs the
process little beyond its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from api.live.snapshots import SharedSnapshots, Snapshot, SnapshotItem, read_snapshot
from api.live.stream import Message
from api.live.subscription import Catchup, Subscription
from riverbed.core.errors import Unavailable
from riverbed.core.redis import as_text
from riverbed.core.topology import (
    ALERTS_CHANNEL,
    LIVE_CHANNEL,
    RESULTS_CHANNEL,
    STATUS_CHANNEL,
    TAIL_CHANNEL,
)

log = logging.getLogger(__name__)
ENTRY_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
REPLAY_PAGE = 1000  # entries read per XRANGE while replaying
# The SSE event name of each log's messages.
LOG_EVENTS = {
    LIVE_CHANNEL: "metric",
    RESULTS_CHANNEL: "metric",
    TAIL_CHANNEL: "tail",
    ALERTS_CHANNEL: "alert",
    STATUS_CHANNEL: "status",
}


class LiveUnavailable(Unavailable):
    title = "Live updates unavailable"


def parse_id(text: str | None) -> tuple[int, int] | None:
    """A log entry id as a comparable pair, or None for anything else."""
    found = ENTRY_ID.match(text or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


class Entry:
    """One entry of a live log: its order, the update it carries (for filters) and its SSE
    message, encoded once for every subscriber."""

    __slots__ = ("message", "order", "update")

    def __init__(self, order: tuple[int, int], update: dict[str, Any], message: Message) -> None:
        self.order = order
        self.update = update
        self.message = message

    @classmethod
    def of(cls, entry_id: bytes | str, fields: dict[Any, Any], event: str) -> Entry | None:
        text = as_text(entry_id)
        order = parse_id(text)
        raw = fields.get(b"u", fields.get("u"))
        if order is None or raw is None:
            return None
        data = as_text(raw)
        return cls(order, json.loads(data), Message(event, data, text))


Filter = Callable[[dict[str, Any]], bool]


class FieldFilter:
    """Entries whose fields equal these values. Equal filters compare and hash equal, so the
    reader tests an entry once per distinct filter, not once per client: ten thousand
    dashboards on one stream cost one test per update."""

    __slots__ = ("items",)

    def __init__(self, fields: dict[str, str]) -> None:
        self.items = tuple(sorted(fields.items()))

    def __call__(self, update: dict[str, Any]) -> bool:
        return all(str(update.get(name)) == value for name, value in self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldFilter) and other.items == self.items

    def __hash__(self) -> int:
        return hash(self.items)


class Subscriber:
    """One client's place in a log: its filter, its bounded queue, and why it was closed, if
    it was. Compared and hashed by identity: each is one client."""

    __slots__ = ("closed", "matches", "queue", "size", "waiter")

    def __init__(self, matches: Filter, size: int) -> None:
        self.matches = matches
        self.size = size
        self.queue: deque[Entry] = deque()
        self.closed: str | None = None  # "cut:...", "error:...", "shutdown:..." or "gone:"
        self.waiter: asyncio.Future[None] | None = None

    def offer(self, entry: Entry) -> None:
        """Queue an entry that matches this subscriber's filter."""
        if self.closed:
            return
        if len(self.queue) >= self.size:
            self.close(
                "cut",
                f"this client fell {self.size} updates behind; reconnect with "
                "Last-Event-ID to catch up",
            )
            return
        self.queue.append(entry)
        self.wake()

    def close(self, kind: str, reason: str) -> None:
        if not self.closed:
            self.closed = f"{kind}:{reason}"
            self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until the next offer, close or heartbeat."""
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class LogReader:
    """The one task of a process that reads one live log and offers each entry to every
    subscriber; started with the first subscriber, stopped a while after the last leaves."""

    def __init__(self, url: str, key: str, event: str, idle_seconds: float = 30.0) -> None:
        self.url = url
        self.key = key
        self.event = event
        self.idle_seconds = idle_seconds
        # Subscribers by filter: an entry is tested once per distinct filter.
        self.groups: dict[Filter, set[Subscriber]] = {}
        self.count = 0
        self._task: asyncio.Task[None] | None = None
        # Set while the task reads from a known position: a subscriber registered before it
        # is set is offered every entry after ``position``, the newest entry the task read.
        self.reading = asyncio.Event()
        self.position = "0-0"
        self.failing = False  # the last read failed: Redis may be down

    async def add(self, subscriber: Subscriber, timeout: float = 5.0) -> None:
        """Register ``subscriber`` and wait until the task reads; raises
        :class:`LiveUnavailable` if it cannot (Redis down)."""
        self.register(subscriber)
        if self._task is None or self._task.done():
            self.reading.clear()
            self._task = asyncio.create_task(self._run(), name=f"live-log {self.key}")
        try:
            await asyncio.wait_for(self.reading.wait(), timeout)
        except TimeoutError:
            self.remove(subscriber)
            raise LiveUnavailable("live updates cannot be followed now: no live log") from None

    @property
    def started(self) -> bool:
        """Whether the task runs (it may still be finding its position)."""
        return self._task is not None and not self._task.done()

    def register(self, subscriber: Subscriber) -> None:
        """Offer ``subscriber`` every matching entry read from now on."""
        group = self.groups.setdefault(subscriber.matches, set())
        if subscriber not in group:
            group.add(subscriber)
            self.count += 1

    def remove(self, subscriber: Subscriber) -> None:
        group = self.groups.get(subscriber.matches)
        if group is not None and subscriber in group:
            group.discard(subscriber)
            self.count -= 1
            if not group:
                del self.groups[subscriber.matches]

    @property
    def subscribers(self) -> list[Subscriber]:
        return [subscriber for group in self.groups.values() for subscriber in group]

    def offer(self, entry: Entry) -> None:
        for matches, group in list(self.groups.items()):
            if matches(entry.update):
                for subscriber in list(group):
                    subscriber.offer(entry)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        client = aioredis.Redis.from_url(self.url, socket_keepalive=True)
        position = "$"
        self.position = position
        idle_since: float | None = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self.count:
                    idle_since = idle_since or loop.time()
                    if loop.time() - idle_since > self.idle_seconds:
                        return
                else:
                    idle_since = None
                try:
                    if position == "$":  # from the log's end as it is now, not as it will be
                        position = self.position = await _last_id(client, self.key)
                        self.reading.set()
                        self.failing = False
                    answer: Any = await client.xread({self.key: position}, count=1000, block=1000)
                except redis.RedisError as exc:
                    self.reading.clear()
                    self.failing = True
                    for subscriber in self.subscribers:
                        subscriber.close("error", f"lost the live log: {exc}")
                    position = "$"
                    await asyncio.sleep(1.0)
                    continue
                for _, entries in answer or []:
                    for entry_id, fields in entries:
                        entry = Entry.of(entry_id, fields, self.event)
                        position = self.position = as_text(entry_id)
                        if entry is not None:
                            self.offer(entry)
        finally:
            await client.aclose()


async def _last_id(client: aioredis.Redis, key: str) -> str:
    """The id of the log's newest entry; ``0-0`` while the sink has written none."""
    try:
        info = await client.xinfo_stream(key)
    except redis.ResponseError:  # no such key yet
        return "0-0"
    return as_text(info["last-generated-id"])


@dataclass(frozen=True)
class Position:
    """Where a log stands: its newest id, and the oldest it still holds when it has lost
    older ones to trimming (None while it holds every entry ever added)."""

    last: tuple[int, int]
    last_text: str
    first_kept: tuple[int, int] | None

    def holds_after(self, resume: tuple[int, int]) -> bool:
        """Whether every entry after ``resume`` is still in the log (trimming drops whole
        nodes from the front: one id older than the first kept may already be gone)."""
        if resume > self.last:  # an id this log never gave: another Redis, or a lost one
            return False
        return self.first_kept is None or resume >= self.first_kept


class Hub:
    """Every live log of this process, read once each, the subscriptions to them, and the one
    heartbeat timer that wakes them all."""

    def __init__(
        self,
        client: aioredis.Redis,
        url: str,
        queue_size: int = 1000,
        per_caller: int = 100,
        total: int = 10_000,
        heartbeat_seconds: float = 15.0,
    ) -> None:
        self.client = client
        self.url = url
        self.queue_size = queue_size
        self.per_caller = per_caller
        self.total = total
        self.heartbeat_seconds = heartbeat_seconds
        self.beat = 0  # counts heartbeats; a subscription that sees it change sends one
        self._readers: dict[str, LogReader] = {}
        self._callers: dict[str, int] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._snapshots = SharedSnapshots()
        self._probes: dict[str, asyncio.Future[Position]] = {}
        self.connections = 0

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for reader in self._readers.values():
            await reader.stop()

    def shutdown(self) -> None:
        """End every subscription with a ``shutdown`` event: the process is stopping, and a
        server waits for open responses to end before it stops."""
        for reader in self._readers.values():
            for subscriber in reader.subscribers:
                subscriber.close(
                    "shutdown", "this API process is stopping; reconnect with Last-Event-ID"
                )

    def reader(self, key: str) -> LogReader:
        if key not in self._readers:
            self._readers[key] = LogReader(self.url, key, LOG_EVENTS.get(key, "message"))
        return self._readers[key]

    async def position(self, key: str) -> Position:
        """The log's position; raises :class:`LiveUnavailable` when Redis does not answer."""
        try:
            info = await self.client.xinfo_stream(key)
        except redis.ResponseError:  # no log yet
            return Position((0, 0), "0-0", None)
        except redis.RedisError as exc:
            raise LiveUnavailable(f"live updates cannot be followed now: {exc}") from None
        last_text = as_text(info["last-generated-id"])
        first = info.get("first-entry")
        trimmed = int(info.get("entries-added", 0)) > int(info.get("length", 0))
        first_kept = parse_id(as_text(first[0])) if first and trimmed else None
        if trimmed and first_kept is None:  # trimmed to nothing: nothing after any id is kept
            first_kept = parse_id(last_text)
        return Position(parse_id(last_text) or (0, 0), last_text, first_kept)

    def admit(self, caller: str) -> None:
        """Count a connection of ``caller``; raises :class:`TooManyConnections` past its
        limit, :class:`LiveFull` past the process's."""
        if self._callers.get(caller, 0) >= self.per_caller:
            raise TooManyConnections(
                f"this caller already holds {self.per_caller} live connections"
            )
        if self.connections >= self.total:
            raise LiveFull(f"this API process already serves {self.total} live connections")
        self._callers[caller] = self._callers.get(caller, 0) + 1
        self.connections += 1

    def release(self, caller: str) -> None:
        self.connections -= 1
        self._callers[caller] -= 1
        if self._callers[caller] <= 0:
            del self._callers[caller]

    async def follow(
        self,
        key: str,
        matches: Filter,
        snapshot: Snapshot,
        last_event_id: str | None,
        caller: str,
        shared_as: str | None = None,
    ) -> Subscription:
        """One subscription (see the module's docstring); raises :class:`LiveUnavailable`
        before it starts if Redis does not answer. Subscriptions whose snapshots have the same
        ``shared_as`` name share one read of it per log position. The subscription's
        :meth:`Subscription.close` gives back what it holds, whether or not it was ever read."""
        self.admit(caller)
        subscriber = Subscriber(matches, self.queue_size)
        reader = self.reader(key)
        resume = parse_id(last_event_id)
        try:
            if not reader.started or reader.failing:
                await self._probe(key)  # Redis down: a 503 at once, not after a wait
            await reader.add(subscriber)
            # Every entry after the reader's position is offered to this subscriber from now.
            ready = Position(parse_id(reader.position) or (0, 0), reader.position, None)
            kept = resume is not None and (await self.position(key)).holds_after(resume)
            items = None if kept else await self._snapshot(key, shared_as, ready, snapshot)
        except BaseException:
            reader.remove(subscriber)
            self.release(caller)
            raise
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="live-heartbeat")

        def release() -> None:
            reader.remove(subscriber)
            self.release(caller)

        catchup = Catchup(key, ready, resume if kept else None, resume is not None, items)
        return Subscription(subscriber, release, self, catchup)

    async def _probe(self, key: str) -> None:
        """Whether Redis answers, asked once however many subscribers arrive meanwhile."""
        probe = self._probes.get(key)
        if probe is None:
            probe = self._probes[key] = asyncio.ensure_future(self.position(key))
            probe.add_done_callback(lambda _: self._probes.pop(key, None))
        await asyncio.shield(probe)

    async def _snapshot(
        self, key: str, shared_as: str | None, ready: Position, snapshot: Snapshot
    ) -> list[SnapshotItem]:
        try:
            if shared_as is None:
                return await read_snapshot(snapshot)
            return await self._snapshots.get((key, shared_as), ready.last_text, snapshot)
        except redis.RedisError as exc:
            raise LiveUnavailable(f"live updates cannot be followed now: {exc}") from None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            self.beat += 1
            for reader in self._readers.values():
                for subscriber in reader.subscribers:
                    subscriber.wake()

    async def replay(self, key: str, after: tuple[int, int], event: str) -> AsyncIterator[Entry]:
        """The log's entries after ``after``, in order, read a page at a time."""
        start = f"({after[0]}-{after[1]}"
        while True:
            page: Any = await self.client.xrange(key, min=start, max="+", count=REPLAY_PAGE)
            for entry_id, fields in page:
                entry = Entry.of(entry_id, fields, event)
                start = f"({as_text(entry_id)}"
                if entry is not None:
                    yield entry
            if len(page) < REPLAY_PAGE:
                return


class TooManyConnections(Unavailable):
    status, title = 429, "Too many live connections"


class LiveFull(Unavailable):
    title = "Live updates full"
