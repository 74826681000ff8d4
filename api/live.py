"""``GET /v1/live/metrics``: server-sent events, one ``metric`` message per applied update.

A new subscriber first receives the current latest values (``snapshot`` events) so a dashboard
is filled at once, then every update the Redis sink applies. Filters: ``stream``, ``field``,
``group``. Heartbeats (SSE comments) keep proxies from closing idle connections.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis
from redis.asyncio.client import PubSub
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request

from api.services import Services
from riverbed.core.errors import Unavailable
from riverbed.core.redis import as_text
from riverbed.core.topology import LIVE_CHANNEL


def _matches(update: dict[str, Any], filters: dict[str, str]) -> bool:
    return all(str(update.get(k)) == v for k, v in filters.items())


class LiveUnavailable(Unavailable):
    title = "Live updates unavailable"


async def subscribe(services: Services, channel: str) -> PubSub:
    """A subscription made before the response starts: with Redis down the client gets a 503
    it can act on, not a 200 with an empty stream."""
    pubsub = services.redis.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(channel)
    except redis.RedisError as exc:
        await pubsub.aclose()
        raise LiveUnavailable(f"live updates cannot be followed now: {exc}") from None
    return pubsub


async def sse_events(
    pubsub: PubSub,
    request: Request,
    channel: str,
    snapshot: Callable[[], Awaitable[list[bytes | str]]],
    filters: dict[str, str],
) -> AsyncIterator[dict]:
    """``snapshot`` events for the current values, then each published update that matches.

    The caller subscribed first (:func:`subscribe`), so an update published while the snapshot
    is read is not missed (at worst it is seen twice; versions tell a client which is newer).
    """
    try:
        for raw in await snapshot():
            update = json.loads(raw)
            if _matches(update, filters):
                yield {"event": "snapshot", "data": json.dumps(update)}
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                if await request.is_disconnected():
                    return
                continue
            data = message["data"]
            if _matches(json.loads(data), filters):
                yield {"event": "metric", "data": as_text(data)}
    finally:
        await pubsub.unsubscribe(channel)
        await pubsub.aclose()


async def live_metrics(request: Request) -> EventSourceResponse:
    services: Services = request.app.state.services
    filters = {
        k: request.query_params[k]
        for k in ("stream", "field", "group")
        if k in request.query_params
    }
    if "stream" in filters:
        services.stream(filters["stream"])  # 404 for an unknown stream instead of silence
    streams = [filters["stream"]] if "stream" in filters else services.catalog.names()

    async def snapshot() -> list[bytes | str]:
        return await services.live.stream_snapshot(streams)

    pubsub = await subscribe(services, LIVE_CHANNEL)
    return EventSourceResponse(
        sse_events(pubsub, request, LIVE_CHANNEL, snapshot, filters),
        ping=int(services.settings.sse_heartbeat_seconds),
    )
