"""One live subscription as a server-sent event stream, at the cost of two small tasks.

sse-starlette's ``EventSourceResponse`` runs an anyio task group of four tasks per connection
(the stream, a ping timer, a disconnect listener and a shutdown listener); at ten thousand
viewers those timers and task groups were where the API process spent its time and memory
(bench/RESULTS.md). Here a connection is the handler's own task, which writes what the hub
hands it, and a watcher parked on ``receive()`` that ends the subscription when the client goes
away. Heartbeats come from the hub's one timer, each message is encoded once however many
clients receive it (:class:`Message` keeps its frame), and messages queued together leave in
one write. The encoding is sse-starlette's (``ServerSentEvent``), lines ending in ``\\n``.

The body of a stream is written with the server's own ``send`` (:func:`keep_server_send`),
not through the middleware stack: the middlewares (security headers, host check, CORS,
authentication, error pages) act on a response's start, which still goes through all of them,
and pass its body on untouched, at the cost of one coroutine call each per message. At ten
thousand viewers those calls were a seventh of the API process's time per update (py-spy,
bench/RESULTS.md). Without the server's ``send`` in the scope (an in-process test client) the
body goes the usual way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from sse_starlette.event import ServerSentEvent
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

SERVER_SEND = "riverbed.server_send"  # the scope key of the server's own ``send``


def keep_server_send(app: ASGIApp) -> ASGIApp:
    """``app``, with the server's ``send`` kept in each HTTP scope for :class:`EventStream`."""

    async def with_server_send(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SERVER_SEND] = send
        await app(scope, receive, send)

    return with_server_send


class Message:
    """One SSE message and its encoded frame, made once and shared by every receiver."""

    __slots__ = ("data", "event", "frame", "id")

    def __init__(self, event: str, data: str, id: str | None = None) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.frame = ServerSentEvent(data=data, event=event, id=id, sep="\n").encode()

    def __repr__(self) -> str:
        return f"Message({self.event!r}, {self.data!r}, id={self.id!r})"


class Heartbeat(Message):
    """An SSE comment: keeps proxies from closing an idle stream; EventSource ignores it."""

    def __init__(self) -> None:
        self.event, self.data, self.id = "", "", None
        self.frame = b": ping\n\n"


HEARTBEAT = Heartbeat()


class EventStream(Response):
    """The response of one subscription: ``batches`` are written as they come, ``stop`` ends
    the subscription (the client went away); it is called once the response is over, however
    it ended, so a subscription's resources never depend on the stream being iterated."""

    media_type = "text/event-stream"

    def __init__(
        self,
        batches: AsyncIterator[list[Message]],
        stop: Callable[[], None],
        retry_ms: int,
    ) -> None:
        self.batches = batches
        self.stop = stop
        self.retry_ms = retry_ms
        self.status_code = 200
        self.background = None
        self.body = b""
        # No compression and no proxy buffering: each message must leave when it is written.
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(_watch(receive, self.stop))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            send = scope.get(SERVER_SEND, send)  # the body past the middlewares (see above)
            # How long EventSource waits before reconnecting: a field of the first message.
            retry = f"retry: {self.retry_ms}\n".encode()
            async for batch in self.batches:
                body = batch[0].frame if len(batch) == 1 else _join(batch)
                if retry:
                    body, retry = retry + body, b""
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            self.stop()
            with contextlib.suppress(Exception):
                await self.batches.aclose()  # type: ignore[attr-defined]


def _join(batch: list[Message]) -> bytes:
    return b"".join(message.frame for message in batch)


async def _watch(receive: Receive, stop: Callable[[], None]) -> None:
    """Wait for the client to go away (a GET has no body to read), then end the stream."""
    while (await receive())["type"] != "http.disconnect":
        pass
    stop()
