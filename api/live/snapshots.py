"""Snapshots of live values, read once per log position however many clients arrive at once.

A new subscriber first gets the current values, read after it was registered at the log
reader's position: whatever the read returns reflects at least every entry up to that
position, and every later entry reaches the subscriber live. So while the reader stays at one
position, one read serves every subscriber registered there: ten thousand dashboards opening
after a deploy cost one read, not ten thousand. A read is shared for at most ``max_age``
seconds, so values changed outside the log (a deleted stream) are not served for long.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from api.live.stream import Message
from riverbed.core.redis import as_text

Snapshot = Callable[[], Awaitable[list[bytes | str]]]
SnapshotItem = tuple[dict[str, Any], Message]  # the update (for filters) and its message


async def read_snapshot(snapshot: Snapshot) -> list[SnapshotItem]:
    items = []
    for raw in await snapshot():
        data = as_text(raw)
        items.append((json.loads(data), Message("snapshot", data)))
    return items


class SharedSnapshots:
    def __init__(self, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self._reads: dict[Any, tuple[str, float, asyncio.Task[list[SnapshotItem]]]] = {}

    async def get(self, name: Any, position: str, snapshot: Snapshot) -> list[SnapshotItem]:
        """The values of ``name`` for a subscriber registered at ``position``; raises what the
        read raised (each failed read is retried by the next subscriber, not shared)."""
        loop = asyncio.get_running_loop()
        held = self._reads.get(name)
        if held is not None:
            at, started, read = held
            failed = read.done() and (read.cancelled() or read.exception() is not None)
            if at == position and loop.time() - started <= self.max_age and not failed:
                return await asyncio.shield(read)
        # A task of its own: one client that leaves while it runs does not cancel the others'.
        read = loop.create_task(read_snapshot(snapshot))
        self._reads[name] = (position, loop.time(), read)
        return await asyncio.shield(read)
