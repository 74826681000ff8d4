"""``GET /v1/live/metrics``: server-sent events, one ``metric`` message per applied update.

A new subscriber first receives the current latest values (``snapshot`` events) so a dashboard
is filled at once, then every update the Redis sink applies. Filters: ``stream``, ``field``,
``group``. Heartbeats (SSE comments) keep proxies from closing idle connections.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request

from api.services import Services
from schemas.registry import as_text
from sinks.redis_writer import LIVE_CHANNEL, latest_key


def _matches(update: dict[str, Any], filters: dict[str, str]) -> bool:
    return all(str(update.get(k)) == v for k, v in filters.items())


async def _events(
    services: Services, request: Request, filters: dict[str, str]
) -> AsyncIterator[dict]:
    pubsub = services.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(LIVE_CHANNEL)
    try:
        streams = [filters["stream"]] if "stream" in filters else services.catalog.names()
        for stream in streams:
            for raw in (await services.redis.hgetall(latest_key(stream))).values():
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
            update = json.loads(data)
            if _matches(update, filters):
                yield {
                    "event": "metric",
                    "data": as_text(data),
                }
    finally:
        await pubsub.unsubscribe(LIVE_CHANNEL)
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
    return EventSourceResponse(
        _events(services, request, filters), ping=int(services.settings.sse_heartbeat_seconds)
    )
