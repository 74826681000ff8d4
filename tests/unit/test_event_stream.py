"""The live stream's response at the ASGI level: its start goes through the middlewares, its
body through the server's own ``send`` when the server left it in the scope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from api.live.stream import EventStream, Message, keep_server_send

Sent = list[tuple[str, dict[str, Any]]]


def stream_of(*batches: list[Message]) -> EventStream:
    async def produce() -> AsyncIterator[list[Message]]:
        for batch in batches:
            yield batch

    return EventStream(produce(), lambda: None, 2000)


async def serve(app: Any, sent: Sent) -> None:
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never goes away during the test
        return {"type": "http.disconnect"}

    async def server_send(message: dict[str, Any]) -> None:
        sent.append(("server", message))

    await app({"type": "http", "method": "GET"}, receive, server_send)


def through_a_middleware(response: EventStream) -> Any:
    """An app whose one middleware tags what passes through its ``send``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def tagged(message: MutableMapping[str, Any]) -> None:
            await send({**message, "via": "middleware"})

        await response(scope, receive, tagged)

    return app


def test_the_start_passes_the_middlewares_and_the_body_goes_past_them() -> None:
    sent: Sent = []
    response = stream_of([Message("metric", "{}", "1-0")], [Message("metric", "{}", "2-0")])
    asyncio.run(serve(keep_server_send(through_a_middleware(response)), sent))
    kinds = [(message["type"], message.get("via")) for _, message in sent]
    assert kinds == [
        ("http.response.start", "middleware"),
        ("http.response.body", None),
        ("http.response.body", None),
        ("http.response.body", None),
    ]
    assert sent[1][1]["body"].startswith(b"retry: 2000\n")
    assert b"id: 2-0" in sent[2][1]["body"] and sent[3][1]["more_body"] is False


def test_without_the_servers_send_the_body_goes_the_usual_way() -> None:
    sent: Sent = []
    response = stream_of([Message("metric", "{}", "1-0")])
    asyncio.run(serve(through_a_middleware(response), sent))
    assert {message.get("via") for _, message in sent} == {"middleware"}
