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
reconnect when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from riverbed.core.errors import Unavailable
from riverbed.core.redis import as_text

log = logging.getLogger(__name__)
ENTRY_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
REPLAY_PAGE = 1000  # entries read per XRANGE while replaying


class LiveUnavailable(Unavailable):
    title = "Live updates unavailable"


def parse_id(text: str | None) -> tuple[int, int] | None:
    """A log entry id as a comparable pair, or None for anything else."""
    found = ENTRY_ID.match(text or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


@dataclass(frozen=True)
class Entry:
    id: str
    order: tuple[int, int]
    data: str
    update: dict[str, Any]

    @classmethod
    def of(cls, entry_id: bytes | str, fields: dict[Any, Any]) -> Entry | None:
        text = as_text(entry_id)
        order = parse_id(text)
        raw = fields.get(b"u", fields.get("u"))
        if order is None or raw is None:
            return None
        data = as_text(raw)
        return cls(text, order, data, json.loads(data))


Filter = Callable[[dict[str, Any]], bool]


@dataclass(eq=False)  # compared and hashed by identity: each is one client
class Subscriber:
    """One client's place in a log: its filter, its queue, and why it was cut, if it was."""

    matches: Filter
    queue: asyncio.Queue[Entry]
    closed: str | None = None  # "cut: ..." or "error: ..."
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, entry: Entry) -> None:
        if self.closed or not self.matches(entry.update):
            return
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.close(
                "cut",
                f"this client fell {self.queue.maxsize} updates behind; reconnect with "
                "Last-Event-ID to catch up",
            )
        self.wake.set()

    def close(self, kind: str, reason: str) -> None:
        if not self.closed:
            self.closed = f"{kind}:{reason}"
            self.wake.set()


class LogReader:
    """The one task of a process that reads one live log and offers each entry to every
    subscriber; started with the first subscriber, stopped a while after the last leaves."""

    def __init__(self, url: str, key: str, idle_seconds: float = 30.0) -> None:
        self.url = url
        self.key = key
        self.idle_seconds = idle_seconds
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        # Set while the task reads from a known position: a subscriber waits for it before it
        # reads the log's position itself, so the task's is never past the subscriber's.
        self.reading = asyncio.Event()

    async def add(self, subscriber: Subscriber, timeout: float = 5.0) -> None:
        """Register ``subscriber`` and wait until the task reads; raises
        :class:`LiveUnavailable` if it cannot (Redis down)."""
        self.subscribers.add(subscriber)
        if self._task is None or self._task.done():
            self.reading.clear()
            self._task = asyncio.create_task(self._run(), name=f"live-log {self.key}")
        try:
            await asyncio.wait_for(self.reading.wait(), timeout)
        except TimeoutError:
            self.subscribers.discard(subscriber)
            raise LiveUnavailable("live updates cannot be followed now: no live log") from None

    def remove(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        client = aioredis.Redis.from_url(self.url, socket_keepalive=True)
        position = "$"
        idle_since: float | None = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self.subscribers:
                    idle_since = idle_since or loop.time()
                    if loop.time() - idle_since > self.idle_seconds:
                        return
                else:
                    idle_since = None
                try:
                    if position == "$":  # from the log's end as it is now, not as it will be
                        position = await _last_id(client, self.key)
                        self.reading.set()
                    answer: Any = await client.xread({self.key: position}, count=1000, block=1000)
                except redis.RedisError as exc:
                    self.reading.clear()
                    for subscriber in list(self.subscribers):
                        subscriber.close("error", f"lost the live log: {exc}")
                    position = "$"
                    await asyncio.sleep(1.0)
                    continue
                for _, entries in answer or []:
                    for entry_id, fields in entries:
                        entry = Entry.of(entry_id, fields)
                        position = as_text(entry_id)
                        if entry is None:
                            continue
                        for subscriber in list(self.subscribers):
                            subscriber.offer(entry)
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
    """Every live log of this process, read once each, and the subscriptions to them."""

    def __init__(
        self,
        client: aioredis.Redis,
        url: str,
        queue_size: int = 1000,
        per_caller: int = 100,
        total: int = 10_000,
    ) -> None:
        self.client = client
        self.url = url
        self.queue_size = queue_size
        self.per_caller = per_caller
        self.total = total
        self._readers: dict[str, LogReader] = {}
        self._callers: dict[str, int] = {}
        self.connections = 0

    async def close(self) -> None:
        for reader in self._readers.values():
            await reader.stop()

    def reader(self, key: str) -> LogReader:
        if key not in self._readers:
            self._readers[key] = LogReader(self.url, key)
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
        snapshot: Callable[[], Awaitable[list[bytes | str]]],
        last_event_id: str | None,
        caller: str,
    ) -> AsyncIterator[dict[str, Any]]:
        """The SSE events of one subscription (see the module's docstring); raises
        :class:`LiveUnavailable` before the first event if Redis does not answer."""
        self.admit(caller)
        subscriber = Subscriber(matches, asyncio.Queue(self.queue_size))
        reader = self.reader(key)
        try:
            await self.position(key)  # Redis down: a 503 at once, not after the reader's wait
            await reader.add(subscriber)
            position = await self.position(key)
        except BaseException:
            reader.remove(subscriber)
            self.release(caller)
            raise
        resume = parse_id(last_event_id)
        kept = resume is not None and position.holds_after(resume)
        return self._events(
            key,
            subscriber,
            reader,
            caller,
            position,
            resume if kept else None,
            snapshot,
            resume is not None,
        )

    async def _events(
        self,
        key: str,
        subscriber: Subscriber,
        reader: LogReader,
        caller: str,
        position: Position,
        resume: tuple[int, int] | None,
        snapshot: Callable[[], Awaitable[list[bytes | str]]],
        resuming: bool,
    ) -> AsyncIterator[dict[str, Any]]:
        seen = [position.last if resume is None else resume]  # the newest entry accounted for
        try:
            try:
                async for event in self._catch_up(
                    key, subscriber, position, resume, snapshot, resuming, seen
                ):
                    yield event
            except redis.RedisError as exc:  # the stream has started: say it in the stream
                yield {"event": "error", "data": json.dumps({"reason": f"lost Redis: {exc}"})}
                return
            high = seen[0]
            while True:
                while not subscriber.queue.empty():
                    entry = subscriber.queue.get_nowait()
                    if entry.order > high:
                        high = entry.order
                        yield message(entry)
                if subscriber.closed:
                    kind, _, reason = subscriber.closed.partition(":")
                    yield {"event": kind, "data": json.dumps({"reason": reason})}
                    return
                subscriber.wake.clear()
                if subscriber.queue.empty() and not subscriber.closed:
                    await subscriber.wake.wait()
        finally:
            reader.remove(subscriber)
            self.release(caller)

    async def _catch_up(
        self,
        key: str,
        subscriber: Subscriber,
        position: Position,
        resume: tuple[int, int] | None,
        snapshot: Callable[[], Awaitable[list[bytes | str]]],
        resuming: bool,
        seen: list[tuple[int, int]],
    ) -> AsyncIterator[dict[str, Any]]:
        """What comes before the live updates: the missed ones (``seen`` follows the newest
        entry read, matching or not), or reset, snapshot and ready."""
        if resume is not None:
            async for entry in self._replay(key, resume):
                seen[0] = entry.order
                if subscriber.matches(entry.update):
                    yield message(entry)
            return
        if resuming:
            reason = "the updates since Last-Event-ID are no longer kept"
            yield {"event": "reset", "data": json.dumps({"reason": reason})}
        for raw in await snapshot():
            update = json.loads(raw)
            if subscriber.matches(update):
                yield {"event": "snapshot", "data": json.dumps(update)}
        yield {"event": "ready", "id": position.last_text, "data": "{}"}

    async def _replay(self, key: str, after: tuple[int, int]) -> AsyncIterator[Entry]:
        """The log's entries after ``after``, in order, read a page at a time."""
        start = f"({after[0]}-{after[1]}"
        while True:
            page: Any = await self.client.xrange(key, min=start, max="+", count=REPLAY_PAGE)
            for entry_id, fields in page:
                entry = Entry.of(entry_id, fields)
                start = f"({as_text(entry_id)}"
                if entry is not None:
                    yield entry
            if len(page) < REPLAY_PAGE:
                return


class TooManyConnections(Unavailable):
    status, title = 429, "Too many live connections"


class LiveFull(Unavailable):
    title = "Live updates full"


def message(entry: Entry) -> dict[str, Any]:
    return {"event": "metric", "id": entry.id, "data": entry.data}
