"""An agent never lets Faust commit a batch it did not finish, whatever raised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from schemas.catalog import StreamNotFound
from streams.agents import process_batches


@dataclass
class Message:
    """Faust's message refcount: the offset may be committed once it drops to zero."""

    refcount: int = 1

    def incref(self) -> None:
        self.refcount += 1

    def decref(self) -> None:
        self.refcount -= 1


@dataclass
class Event:
    message: Message = field(default_factory=Message)

    def ack(self) -> None:
        self.message.decref()


async def take_events(batch: list[Event]) -> AsyncIterator[Sequence[Event]]:
    """What faust's Stream.take_events does around a batch: ack it in a finally."""
    try:
        yield batch
    finally:
        for event in batch:
            event.ack()


class DeadCatalog:
    def get(self, name: str) -> Any:
        raise StreamNotFound(name)  # as a catalog lookup fails when Redis is gone

    def is_retired(self, name: str) -> bool:
        return False


class DeletedCatalog(DeadCatalog):
    """The stream was deleted (drained first): what its agent still reads was processed."""

    def is_retired(self, name: str) -> bool:
        return True


def test_a_deleted_streams_records_read_again_are_released_not_crashed_on() -> None:
    batch = [Event() for _ in range(3)]
    context: Any = type("Context", (), {"catalog": DeletedCatalog()})()
    asyncio.run(process_batches(take_events(batch), "orders", context, max_in_flight=2))
    assert [event.message.refcount for event in batch] == [0, 0, 0]


def test_a_batch_whose_lookup_raised_stays_held_so_faust_cannot_commit_it() -> None:
    batch = [Event() for _ in range(3)]
    context: Any = type("Context", (), {"catalog": DeadCatalog()})()

    async def run() -> None:
        await process_batches(take_events(batch), "orders", context, max_in_flight=2)

    with pytest.raises(StreamNotFound):
        asyncio.run(run())
    assert [event.message.refcount for event in batch] == [1, 1, 1]
