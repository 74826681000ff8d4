"""Live values the Redis sink keeps: latest and recent windows, of streams and declared metrics."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from riverbed.core.heartbeat import summarise
from riverbed.core.redis import as_text
from riverbed.core.topology import (
    HEARTBEAT_PREFIX,
    latest_key,
    results_latest_key,
    results_series_key,
    series_key,
)


class LiveValues:
    """Asyncio Redis reads; every value is the JSON the sink wrote."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def _hash(self, key: str) -> dict[str, Any]:
        return {as_text(k): json.loads(v) for k, v in (await self.redis.hgetall(key)).items()}

    async def _series(self, key: str) -> list[Any]:
        values = await self.redis.zrange(key, 0, -1)
        return [json.loads(v) for v in values]  # type: ignore[arg-type]

    async def stream_latest(self, stream: str) -> dict[str, Any]:
        """``{"field|group": newest window}`` of a stream's built-in metrics."""
        return await self._hash(latest_key(stream))

    async def stream_series(self, stream: str, field: str, group: str) -> list[Any]:
        return await self._series(series_key(stream, field, group))

    async def metric_latest(self, metric: str) -> dict[str, Any]:
        """``{group_key: newest window}`` of a declared metric."""
        return await self._hash(results_latest_key(metric))

    async def metric_series(self, metric: str, group: str) -> list[Any]:
        return await self._series(results_series_key(metric, group))

    async def stream_snapshot(self, streams: list[str]) -> list[bytes | str]:
        """The raw newest windows of these streams, as SSE snapshots send them."""
        out: list[bytes | str] = []
        for stream in streams:
            out += (await self.redis.hgetall(latest_key(stream))).values()
        return out

    async def metric_snapshot(self, metric: str) -> list[bytes | str]:
        return list((await self.redis.hgetall(results_latest_key(metric))).values())

    async def process_snapshot(self) -> list[bytes | str]:
        """The pipeline's processes by component, from the heartbeats still alive: what the
        status channel shows before its changes."""
        beats = [
            (key, await self.redis.get(key))
            async for key in self.redis.scan_iter(f"{HEARTBEAT_PREFIX}:*", count=500)
        ]
        report = summarise(beats, time.time())
        return [
            json.dumps({"kind": "process", "component": component, **entry})
            for component, entry in sorted(report.items())
        ]
