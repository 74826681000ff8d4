"""Who is calling, and may they: an API key on every route but the public ones.

Authentication is Starlette's ``AuthenticationMiddleware`` with a backend that reads the key
from ``Authorization: Bearer rb_...`` or, for Confluent's schema-registry clients (which only
speak HTTP Basic), as the password of ``Authorization: Basic``. A key that is presented and
wrong is a 401 whatever the route; no key leaves the caller anonymous, which only public routes
accept.

Authorisation happens per route (``api.routes``), before anything else the route checks: the
route's one scope must be among the key's, and a key limited to some streams may only use
routes bound to one of them (``{stream}`` in the path or ``?stream=``) or routes that show it
only its own (``Endpoint.filters_streams``). Refusals come before validation, so an outsider
learns nothing about a route's parameters or which streams exist.

Verified keys are cached for a few seconds (``KeyCache``): checking a key costs a database
round trip and a write of its last-used time, which the ingest path cannot pay per request. A
key revoked through the CLI stops working within that time; one revoked through the API, at
once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from api.endpoint import PUBLIC, Endpoint
from api.problems import problem_response
from control.keys import ApiKeys, KeyInfo
from riverbed.core.errors import RiverbedError

MAX_CREDENTIAL = 512  # characters of an Authorization header; a key is about 60
REALM = 'Bearer realm="riverbed"'


class Unauthenticated(RiverbedError):
    status, title = 401, "Unauthenticated"

    def __init__(self, detail: str, error: str | None = None) -> None:
        super().__init__(detail)
        self.error = error

    def headers(self) -> dict[str, str]:
        challenge = REALM + (f', error="{self.error}"' if self.error else "")
        return {"WWW-Authenticate": challenge}


class Forbidden(RiverbedError):
    status, title = 403, "Forbidden"

    def __init__(self, detail: str, required_scope: str) -> None:
        super().__init__(detail)
        self.required_scope = required_scope

    def extra(self) -> dict[str, Any]:
        return {"required_scope": self.required_scope}


class KeyUser(BaseUser):
    """The caller behind a verified key."""

    def __init__(self, info: KeyInfo) -> None:
        self.info = info

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.info.name

    @property
    def identity(self) -> str:
        return f"key:{self.info.prefix}"


class KeyCache:
    """Verified keys for ``ttl`` seconds, by the digest of the whole key (never the key)."""

    def __init__(self, keys: ApiKeys, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.keys = keys
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, KeyInfo]] = OrderedDict()

    async def verify(self, key: str) -> KeyInfo | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        entry = self._entries.get(digest)
        if entry is not None:
            fresh_until, info = entry
            expires = info.expires_at
            if fresh_until > time.monotonic() and (expires is None or expires > _now()):
                return info
            del self._entries[digest]
        found: KeyInfo | None = await anyio.to_thread.run_sync(self.keys.verify, key)
        if found is not None:
            self._entries[digest] = (time.monotonic() + self.ttl, found)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return found

    def forget(self, prefix: str) -> None:
        """Drop a revoked key at once."""
        for digest, (_, info) in list(self._entries.items()):
            if info.prefix == prefix:
                del self._entries[digest]


def _now() -> datetime:
    return datetime.now(UTC)


def presented_key(authorization: str) -> str:
    """The key in an Authorization header; raises :class:`AuthenticationError` when the header
    is there but holds no key."""
    if len(authorization) > MAX_CREDENTIAL:
        raise AuthenticationError("the Authorization header is too long to hold a key")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError("malformed Basic credentials") from None
        _, colon, password = decoded.partition(":")
        if colon and password:
            return password
    raise AuthenticationError(
        "send the API key as 'Authorization: Bearer rb_...' (or as the password of Basic auth)"
    )


class KeyBackend(AuthenticationBackend):
    """Starlette's authentication backend for API keys; the cache is on ``app.state``."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        authorization = conn.headers.get("authorization")
        if authorization is None:
            return None
        key = presented_key(authorization)
        cache: KeyCache = conn.app.state.key_cache
        info = await cache.verify(key)
        if info is None:
            raise AuthenticationError("unknown, revoked or expired API key")
        return AuthCredentials(info.scopes), KeyUser(info)


def refuse(conn: HTTPConnection, exc: Exception) -> Response:
    """``on_error`` of the middleware: a wrong credential is a 401 problem, whatever the route."""
    return problem_response(Unauthenticated(str(exc), "invalid_token"), conn.url.path)


def bound_stream(endpoint: Endpoint, request: Request) -> tuple[bool, str | None]:
    """Whether the route is about one stream, and which: the ``{stream}`` of its path or its
    ``?stream=`` (None when that optional parameter is absent)."""
    if "stream" in request.path_params:
        return True, str(request.path_params["stream"])
    if any(param.name == "stream" for param in endpoint.params):
        return True, request.query_params.get("stream")
    return False, None


def authorize(endpoint: Endpoint, request: Request) -> None:
    """Raise 401/403 unless the caller may use ``endpoint`` for this request."""
    if endpoint.scope == PUBLIC:
        return
    user = request.user
    if not isinstance(user, KeyUser):
        raise Unauthenticated(
            f"this route needs an API key with scope {endpoint.scope}: "
            "send 'Authorization: Bearer rb_...'"
        )
    if endpoint.scope not in request.auth.scopes:
        raise Forbidden(
            f"this key does not grant {endpoint.scope}, which this route needs", endpoint.scope
        )
    allowed = user.info.streams
    if allowed is None or endpoint.filters_streams:
        return
    is_bound, stream = bound_stream(endpoint, request)
    if not is_bound:
        raise Forbidden(
            "this key is limited to some streams and this route spans every stream",
            endpoint.scope,
        )
    if stream is None:
        raise Forbidden(
            "this key is limited to some streams: name one with ?stream=", endpoint.scope
        )
    if stream not in allowed:
        raise Forbidden(f"this key does not grant access to stream {stream!r}", endpoint.scope)


def visible_streams(request: Request) -> frozenset[str] | None:
    """The streams a stream-limited caller may see; None for every stream."""
    user = request.user
    if isinstance(user, KeyUser) and user.info.streams is not None:
        return frozenset(user.info.streams)
    return None
