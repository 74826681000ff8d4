"""Clients that send their request head too slowly get a 408 and lose the connection.

uvicorn times out idle keep-alive connections, and Riverbed times out a body that stops
arriving (``api.bodies``), but nothing bounded the request line and headers: a client could
connect and send nothing, or trickle a header a byte at a time, and hold a connection (and,
past ``max_connections``, keep everyone else out) for as long as it liked. This protocol arms
a timer when a connection opens and when each request begins, and disarms it once the headers
are complete; if it fires first, the client gets a 408 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_PROBLEM = json.dumps(
    {
        "type": "about:blank",
        "title": "Request header timeout",
        "status": 408,
        "detail": "the request line and headers did not arrive in time; send them at once",
    }
).encode()


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's head."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
            b"content-length: "
            + str(len(_PROBLEM)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + _PROBLEM
        )
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with its deadline."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
