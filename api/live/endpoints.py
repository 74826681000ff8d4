"""``GET /v1/live/metrics``: server-sent events, one ``metric`` message per applied update.

A new subscriber first receives the current latest values (``snapshot`` events) and a ``ready``
event, so a dashboard is filled at once, then every update the Redis sink applies, each with
the id of its entry in the live log. A reconnect with ``Last-Event-ID`` (the header
EventSource sends, or ``?last_event_id=``) is replayed exactly the updates it missed instead;
``reset`` says when they are no longer kept, followed by a fresh snapshot. Filters: ``stream``,
``field``, ``group``. Heartbeats (SSE comments) keep proxies from closing idle connections.
The fan-out, resume and slow-client rules are :mod:`api.live.hub`'s; the response is
:mod:`api.live.stream`'s.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from api.live.hub import Filter
from api.live.snapshots import Snapshot
from api.live.stream import EventStream
from api.services import Services
from riverbed.core.topology import LIVE_CHANNEL

RETRY_MS = 2000  # how long EventSource waits before it reconnects


def matcher(filters: dict[str, str]) -> Filter:
    def matches(update: dict[str, Any]) -> bool:
        return all(str(update.get(k)) == v for k, v in filters.items())

    return matches


def last_event_id(request: Request) -> str | None:
    """What the client last received: EventSource's header on a reconnect, or the query
    parameter a page sets when it opens a new EventSource itself."""
    return request.headers.get("last-event-id") or request.query_params.get("last_event_id")


def caller_of(request: Request) -> str:
    user = request.user
    if user.is_authenticated:
        return str(getattr(user, "identity", user.display_name))
    return f"ip:{request.client.host if request.client else 'unknown'}"


async def follow(
    request: Request,
    channel: str,
    filters: dict[str, str],
    snapshot: Snapshot,
    snapshot_name: str,
) -> EventStream:
    """The SSE response of one subscription to ``channel``; 503 before the stream starts when
    Redis does not answer, 429 past the caller's connection limit. ``snapshot_name`` names
    what ``snapshot`` reads: subscriptions that read the same share one read."""
    services: Services = request.app.state.services
    subscription = await services.hub.follow(
        channel,
        matcher(filters),
        snapshot,
        last_event_id(request),
        caller_of(request),
        shared_as=snapshot_name,
    )
    return EventStream(subscription.batches(), subscription.close, RETRY_MS)


async def live_metrics(request: Request) -> EventStream:
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

    return await follow(request, LIVE_CHANNEL, filters, snapshot, "streams:" + ",".join(streams))
