"""The API's cache of verified keys: a crowd of requests carrying one key costs one lookup."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

from api.auth import KeyCache
from control.keys import ApiKeys


class CountingKeys:
    """Stands in for the key store: counts lookups, each taking a moment as a database does."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.lookups = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def verify(self, key: str) -> Any:
        self.lookups += 1
        self.started.set()
        self.release.wait(5)
        return self.answer


def crowd(keys: CountingKeys, key: str, size: int) -> list[Any]:
    async def scenario() -> list[Any]:
        cache = KeyCache(cast(ApiKeys, keys))
        waiting = [asyncio.create_task(cache.verify(key)) for _ in range(size)]
        # Once a lookup runs, every request has passed the cache (they all ran before the
        # loop came back here) and waits on a lookup.
        assert await asyncio.to_thread(keys.started.wait, 5)
        keys.release.set()
        return await asyncio.gather(*waiting)

    return asyncio.run(scenario())


def test_a_thousand_requests_with_one_key_cost_one_lookup() -> None:
    keys = CountingKeys(answer="the key's grants")
    assert crowd(keys, "rb_key", 1000) == ["the key's grants"] * 1000
    assert keys.lookups == 1


def test_a_thousand_requests_with_one_wrong_key_cost_one_lookup() -> None:
    keys = CountingKeys(answer=None)
    assert crowd(keys, "rb_wrong", 1000) == [None] * 1000
    assert keys.lookups == 1
