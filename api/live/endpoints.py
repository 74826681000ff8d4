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

from pathlib import Path

from starlette.requests import Request
from starlette.staticfiles import StaticFiles

from api.live.hub import FieldFilter
from api.live.snapshots import Snapshot
from api.live.stream import EventStream
from api.services import Services
from riverbed.core.topology import ALERTS_CHANNEL, LIVE_CHANNEL, STATUS_CHANNEL, TAIL_CHANNEL

LIVE_PAGE = Path(__file__).resolve().parent.parent / "static" / "live"
RETRY_MS = 2000  # how long EventSource waits before it reconnects


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
        FieldFilter(filters),
        snapshot,
        last_event_id(request),
        caller_of(request),
        shared_as=snapshot_name,
    )
    return EventStream(subscription.batches(), subscription.close, RETRY_MS)


def query_filters(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The filters of a live route among its query parameters; 404 for an unknown stream
    instead of a stream that stays silent."""
    services: Services = request.app.state.services
    filters = {k: request.query_params[k] for k in names if k in request.query_params}
    if "stream" in filters:
        services.stream(filters["stream"])
    return filters


async def live_metrics(request: Request) -> EventStream:
    services: Services = request.app.state.services
    filters = query_filters(request, ("stream", "field", "group"))
    streams = [filters["stream"]] if "stream" in filters else services.catalog.names()

    async def snapshot() -> list[bytes | str]:
        return await services.live.stream_snapshot(streams)

    return await follow(request, LIVE_CHANNEL, filters, snapshot, "streams:" + ",".join(streams))


async def no_snapshot() -> list[bytes | str]:
    """Channels of happenings (events, alerts) have no current value: ``ready`` comes first."""
    return []


async def live_events(request: Request) -> EventStream:
    """A sample of the events the agents processed (``tail``), at most
    ``RIVERBED_LIVE_TAIL_EVENTS_PER_SECOND`` per stream and agent process."""
    filters = query_filters(request, ("stream",))
    return await follow(request, TAIL_CHANNEL, filters, no_snapshot, "none")


async def live_alerts(request: Request) -> EventStream:
    """Alerts as they fire and resolve (``alert``), as the alert rules write them."""
    filters = query_filters(request, ("stream", "rule"))
    return await follow(request, ALERTS_CHANNEL, filters, no_snapshot, "none")


async def live_status(request: Request) -> EventStream:
    """The pipeline's processes (``snapshot``, from their heartbeats), then each change
    (``status``): a process started, stopped or crashed, an embedded engine restarted."""
    services: Services = request.app.state.services
    filters = query_filters(request, ("component",))
    return await follow(
        request, STATUS_CHANNEL, filters, services.live.process_snapshot, "processes"
    )


def live_page() -> StaticFiles:
    """The browser page (``/live/``): static files only; what it shows comes from the routes
    above, with the caller's own credential."""
    return StaticFiles(directory=LIVE_PAGE, html=True)
