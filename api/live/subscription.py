"""One client's subscription to a live log: what it missed (or a snapshot), then live entries.

A subscription yields batches of messages: everything waiting for this client leaves in one
write. It ends with a message saying why (``cut``, ``error``, ``shutdown``) or silently when the
client went away, and :meth:`Subscription.close` gives its place back to the hub at once,
whether the batches were ever read or not.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from api.live.snapshots import SnapshotItem
from api.live.stream import HEARTBEAT, Message

if TYPE_CHECKING:
    from api.live.hub import Hub, Position, Subscriber


@dataclass(frozen=True)
class Catchup:
    """What comes before the live entries: the entries after ``resume`` replayed from the log,
    or (``resume`` None) the snapshot and ``ready`` at ``position``, preceded by ``reset`` when
    the client asked to resume from a point the log no longer holds."""

    key: str
    position: Position
    resume: tuple[int, int] | None
    resuming: bool
    snapshot: list[SnapshotItem] | None


class Subscription:
    def __init__(
        self, subscriber: Subscriber, release: Callable[[], None], hub: Hub, catchup: Catchup
    ) -> None:
        self.subscriber = subscriber
        self._release: Callable[[], None] | None = release
        self.hub = hub
        self.catchup = catchup
        self._messages: AsyncIterator[Message] | None = None

    def close(self) -> None:
        """The client is gone: stop its stream and give back its place (once)."""
        self.subscriber.close("gone", "")
        if self._release is not None:
            release, self._release = self._release, None
            release()

    async def batches(self) -> AsyncIterator[list[Message]]:
        subscriber = self.subscriber
        catchup = self.catchup
        # The newest entry accounted for: what the snapshot reflects, or what was replayed.
        high = [catchup.position.last if catchup.resume is None else catchup.resume]
        try:
            try:
                async for batch in self._catch_up(high):
                    yield batch
            except redis.RedisError as exc:  # the stream has started: say it in the stream
                yield [_reason("error", f"lost Redis: {exc}")]
                return
            newest = high[0]
            beat = self.hub.beat
            queue = subscriber.queue
            while True:
                batch = []
                while queue:
                    entry = queue.popleft()
                    if entry.order > newest:  # replayed or in the snapshot already: skip
                        newest = entry.order
                        batch.append(entry.message)
                if subscriber.closed:
                    kind, _, reason = subscriber.closed.partition(":")
                    if kind != "gone":
                        batch.append(_reason(kind, reason))
                    if batch:
                        yield batch
                    return
                if batch:
                    yield batch
                elif beat != self.hub.beat:
                    beat = self.hub.beat
                    yield [HEARTBEAT]
                else:
                    await subscriber.wait()
        finally:
            self.close()

    async def _catch_up(self, high: list[tuple[int, int]]) -> AsyncIterator[list[Message]]:
        """The missed entries, a page at a time (``high`` follows the newest entry read,
        matching or not), or reset, snapshot and ready."""
        catchup = self.catchup
        matches = self.subscriber.matches
        if catchup.resume is not None:
            batch: list[Message] = []
            event = self.hub.reader(catchup.key).event
            async for entry in self.hub.replay(catchup.key, catchup.resume, event):
                high[0] = entry.order
                if matches(entry.update):
                    batch.append(entry.message)
                    if len(batch) >= 1000:
                        yield batch
                        batch = []
            if batch:
                yield batch
            return
        batch = []
        if catchup.resuming:
            batch.append(_reason("reset", "the updates since Last-Event-ID are no longer kept"))
        batch += [message for update, message in catchup.snapshot or () if matches(update)]
        batch.append(Message("ready", "{}", catchup.position.last_text))
        yield batch

    # Read one message at a time (tests, and clients in Python): heartbeats are skipped.
    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self._messages is None:
            self._messages = self._each()
        return await self._messages.__anext__()

    async def _each(self) -> AsyncIterator[Message]:
        async for batch in self.batches():
            for message in batch:
                if message is not HEARTBEAT:
                    yield message

    async def aclose(self) -> None:
        self.close()
        if self._messages is not None:
            await self._messages.aclose()  # type: ignore[attr-defined]


def _reason(event: str, reason: str) -> Message:
    return Message(event, json.dumps({"reason": reason}))
