"""Keeping the garbage collector's pauses off the API's live streams.

Ten thousand live connections are about a million and a half objects that live as long as
their connections. CPython's full collections walk every one of them: 600-700 ms, every few
seconds while updates flow (measured with bench/live_fanout.py), and every stream stalls
meanwhile. Those objects are not garbage, so :func:`keep_frozen` moves what has lived a few
seconds out of the collector's sight (``gc.freeze()``, which costs nothing): collections then
walk only what is new. Frozen objects are still freed by reference counting when a connection
closes; only garbage *cycles* among them wait, so every ``collect_seconds`` the heap is
unfrozen, collected once and frozen again: one pause per period instead of one every few
seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)


async def keep_frozen(freeze_seconds: float = 1.0, collect_seconds: float = 600.0) -> None:
    """Run for the life of the server process (a task of its own)."""
    collected = time.monotonic()
    while True:
        await asyncio.sleep(freeze_seconds)
        if time.monotonic() - collected >= collect_seconds:
            started = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()
            collected = time.monotonic()
            log.info(
                "full collection: %d unreachable objects in %.0f ms",
                found,
                (time.perf_counter() - started) * 1000,
            )
        gc.freeze()
