"""What every response carries, whatever route answered: security headers and a request id.

Pure ASGI, so it wraps streaming (SSE) responses too. The Content-Security-Policy fits the
JSON API and the Swagger UI served from the package alike (its styles are inline); framing is
refused everywhere. The request id is the caller's ``X-Request-ID`` when it is a plain token,
otherwise a new one, and it is echoed so a client can quote it in a report.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riverbed.core.settings import LOOPBACK

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]


class ResponseHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def allowed_hosts(bind: str, configured: str) -> list[str]:
    """The Host headers to answer. Listening on loopback, only loopback names (and what is
    configured): a web page cannot then rebind its own name to 127.0.0.1 and drive the API
    from a browser (DNS rebinding). Listening on every interface with nothing configured,
    any (a deployment behind a proxy names its hosts in RIVERBED_ALLOWED_HOSTS)."""
    names = [name.strip() for name in configured.split(",") if name.strip()]
    if bind in LOOPBACK:
        return [*names, *LOOPBACK]
    if names:
        return [*names, bind]
    return ["*"]


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID.match(text):
                return text
    return uuid.uuid4().hex
