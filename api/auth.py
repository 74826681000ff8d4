"""Who is calling, and may they: a credential on every route but the public ones.

Authentication is Starlette's ``AuthenticationMiddleware`` with a backend that reads
``Authorization: Bearer``: an API key (``rb_...``, for producers and services) or the access
token of a login (a JWT, for people; ``control.tokens``). Confluent's schema-registry clients
only speak HTTP Basic, so a key is also taken as the Basic password. Browsers have two more
ways: the session cookie of a browser login (``api.sessions``), which may change something
only from this site's own pages (``check_origin``), and, for EventSource, a one-minute stream
token in the query that opens event streams and nothing else. A credential that is presented
and wrong is a 401 whatever the route; none leaves the caller anonymous, which only public
routes accept. A user's scopes are those of their roles.

Authorisation happens per route (``api.routes``), before anything else the route checks: the
route's one scope must be among the key's, and a key limited to some streams may only use
routes bound to one of them (``{stream}`` in the path or ``?stream=``) or routes that show it
only its own (``Endpoint.filters_streams``). Refusals come before validation, so an outsider
learns nothing about a route's parameters or which streams exist.

Verified keys and looked-up users are cached for a few seconds (``KeyCache``, ``UserCache``):
a database round trip per request is more than the ingest path can pay. A key revoked or a user
disabled through the CLI is refused within that time; through the API, at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

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
from control.db import control_sessions
from control.keys import KEY_PREFIX, ApiKeys, KeyInfo
from control.scopes import AUTHENTICATED, GRANTABLE
from control.tokens import (
    AccessTokens,
    InvalidToken,
    RefreshTokens,
    StreamClaims,
    signing_keys,
)
from control.users import UserInfo, Users
from riverbed.core.errors import RiverbedError
from riverbed.core.settings import Settings

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")
MAX_CREDENTIAL = 1024  # characters of an Authorization header (a key is about 60)
SSE = "text/event-stream"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "rb_session"  # the access token of a browser login (HttpOnly)
REFRESH_COOKIE = "rb_refresh"  # its refresh token, sent only to /v1/auth/session
STREAM_TOKEN = "stream_token"  # the query parameter EventSource can carry
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


class Recent(Generic[K, V]):
    """Values for ``ttl`` seconds, at most ``max_entries`` of them (the oldest go first)."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def lookup(self, key: K) -> tuple[V] | None:
        """``(value,)`` while it is fresh (the value may be None); None otherwise."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return (entry[1],)

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (time.monotonic() + self.ttl, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def drop_where(self, stale: Callable[[V], bool]) -> None:
        for key, (_, value) in list(self._entries.items()):
            if stale(value):
                del self._entries[key]


class KeyCache:
    """Verified keys for ``ttl`` seconds, by the digest of the whole key (never the key)."""

    def __init__(self, keys: ApiKeys, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.keys = keys
        self._recent: Recent[str, KeyInfo] = Recent(ttl, max_entries)
        # One database lookup per key at a time, however many requests carry it: a thousand
        # dashboards reconnecting at once must not queue a thousand lookups (nor must a
        # thousand requests with one wrong key).
        self._pending: dict[str, asyncio.Future[KeyInfo | None]] = {}

    async def verify(self, key: str) -> KeyInfo | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        hit = self._recent.lookup(digest)
        if hit is not None:
            (info,) = hit
            if info.expires_at is None or info.expires_at > _now():
                return info
            self._recent.drop(digest)
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(key, digest))
            self._pending[digest] = pending
        return await asyncio.shield(pending)

    async def _lookup(self, key: str, digest: str) -> KeyInfo | None:
        try:
            found: KeyInfo | None = await anyio.to_thread.run_sync(self.keys.verify, key)
            if found is not None:
                self._recent.put(digest, found)
            return found
        finally:
            del self._pending[digest]

    def forget(self, prefix: str) -> None:
        """Drop a revoked key at once."""
        self._recent.drop_where(lambda info: info.prefix == prefix)


class UserPrincipal(BaseUser):
    """The person behind a verified access token (a header, or the session cookie)."""

    def __init__(self, info: UserInfo, via_cookie: bool = False) -> None:
        self.info = info
        self.via_cookie = via_cookie

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.info.username

    @property
    def identity(self) -> str:
        return f"user:{self.info.id}"


class StreamUser(BaseUser):
    """The bearer of a stream token: it may open event streams, and nothing else."""

    def __init__(self, claims: StreamClaims) -> None:
        self.claims = claims

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.claims.subject

    @property
    def identity(self) -> str:
        return self.claims.subject


class UserCache:
    """Users by id for ``ttl`` seconds: an access token is checked against the account's
    current state (disabled, roles) without a database round trip per request."""

    def __init__(self, users: Users, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.users = users
        self._recent: Recent[int, UserInfo | None] = Recent(ttl, max_entries)

    async def get(self, user_id: int) -> UserInfo | None:
        hit = self._recent.lookup(user_id)
        if hit is not None:
            return hit[0]
        found: UserInfo | None = await anyio.to_thread.run_sync(self.users.get, user_id)
        self._recent.put(user_id, found)
        return found

    def forget(self, user_id: int) -> None:
        self._recent.drop(user_id)


class Identity:
    """Everything that says who a caller is, built once per app: the stores (keys, users,
    refresh tokens), the access-token signer, the caches, and a bound on concurrent password
    hashes (argon2id takes 64 MiB and a quarter second each: a login flood must queue, not
    exhaust memory)."""

    HASHES_AT_ONCE = 2

    def __init__(
        self, keys: ApiKeys, users: Users, access: AccessTokens, refresh: RefreshTokens
    ) -> None:
        self.keys = keys
        self.users = users
        self.access = access
        self.refresh = refresh
        self.key_cache = KeyCache(keys)
        self.user_cache = UserCache(users)
        self._hashing: anyio.CapacityLimiter | None = None

    async def blocking(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` (a database call) in a thread."""
        return await anyio.to_thread.run_sync(function, *args)

    async def hashing(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` in a thread, at most ``HASHES_AT_ONCE`` at a time."""
        if self._hashing is None:
            self._hashing = anyio.CapacityLimiter(self.HASHES_AT_ONCE)
        return await anyio.to_thread.run_sync(function, *args, limiter=self._hashing)


def build_identity(settings: Settings) -> Identity:
    """The identity of the control plane of ``settings`` (its schema migrated); raises
    :class:`control.tokens.MissingSecret` when listening on a network without a secret."""
    sessions = control_sessions(settings)
    keys, generated = signing_keys(settings)
    if generated is not None:
        log.warning(
            "development mode: logins are signed with a secret generated in %s; set "
            "RIVERBED_JWT_SECRET_FILE before listening beyond loopback",
            generated,
        )
    return Identity(
        ApiKeys(sessions, GRANTABLE),
        Users(sessions),
        AccessTokens(keys, ttl=timedelta(minutes=settings.access_token_minutes)),
        RefreshTokens(sessions, ttl=timedelta(days=settings.refresh_token_days)),
    )


def _now() -> datetime:
    return datetime.now(UTC)


def presented_credential(authorization: str) -> str:
    """The key or token in an Authorization header; raises :class:`AuthenticationError` when
    the header is there but holds neither."""
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
        "send an API key or an access token as 'Authorization: Bearer ...' (a key may also be "
        "the password of Basic auth)"
    )


class CredentialBackend(AuthenticationBackend):
    """Starlette's authentication backend: API keys and access tokens. The stores and caches
    are the app's :class:`Identity` (``app.state.identity``)."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        identity: Identity = conn.app.state.identity
        authorization = conn.headers.get("authorization")
        if authorization is not None:
            credential = presented_credential(authorization)
            if credential.startswith(KEY_PREFIX):
                info = await identity.key_cache.verify(credential)
                if info is None:
                    raise AuthenticationError("unknown, revoked or expired API key")
                return AuthCredentials([*info.scopes, AUTHENTICATED]), KeyUser(info)
            return await self._user(identity, credential, via_cookie=False)
        stream_token = conn.query_params.get(STREAM_TOKEN)
        if stream_token is not None:
            return await self._stream(identity, stream_token)
        session = conn.cookies.get(SESSION_COOKIE)
        if session is not None:
            return await self._user(identity, session, via_cookie=True)
        return None

    async def _user(
        self, identity: Identity, token: str, via_cookie: bool
    ) -> tuple[AuthCredentials, BaseUser]:
        try:
            claims = identity.access.verify(token)
        except InvalidToken as exc:
            raise AuthenticationError(exc.detail) from None
        user = await identity.user_cache.get(claims.user_id)
        if user is None or user.disabled:
            raise AuthenticationError("the account of this token is disabled or gone")
        return AuthCredentials([*user.scopes, AUTHENTICATED]), UserPrincipal(user, via_cookie)

    async def _stream(self, identity: Identity, token: str) -> tuple[AuthCredentials, BaseUser]:
        try:
            claims = identity.access.verify_stream(token)
        except InvalidToken as exc:
            raise AuthenticationError(exc.detail) from None
        kind, _, ident = claims.subject.partition(":")
        if kind == "user":
            user = await identity.user_cache.get(int(ident))
            if user is None or user.disabled:
                raise AuthenticationError("the account of this token is disabled or gone")
        return AuthCredentials([*claims.scopes, AUTHENTICATED]), StreamUser(claims)


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
    if not user.is_authenticated:
        raise Unauthenticated(
            f"this route needs scope {endpoint.scope}: send an API key or an access token as "
            "'Authorization: Bearer ...'"
        )
    if isinstance(user, StreamUser) and endpoint.media != SSE:
        raise Forbidden("a stream token only opens event streams", endpoint.scope)
    if isinstance(user, UserPrincipal) and user.via_cookie and request.method not in SAFE_METHODS:
        check_origin(request)
    if endpoint.scope == AUTHENTICATED:
        return
    if endpoint.scope not in request.auth.scopes:
        whose = "your roles do" if isinstance(user, UserPrincipal) else "this credential does"
        raise Forbidden(
            f"{whose} not grant {endpoint.scope}, which this route needs", endpoint.scope
        )
    allowed = streams_of(user)
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


def streams_of(user: BaseUser) -> list[str] | None:
    """The streams a credential is limited to; None for every stream (people are never
    limited: their roles say what they may do)."""
    if isinstance(user, KeyUser):
        return user.info.streams
    if isinstance(user, StreamUser):
        return user.claims.streams
    return None


def roles_of(user: BaseUser) -> list[str]:
    """The roles of a credential: a user's, or those a key was created with."""
    if isinstance(user, KeyUser):
        return user.info.roles
    if isinstance(user, UserPrincipal):
        return list(user.info.roles)
    return []


def visible_streams(request: Request) -> frozenset[str] | None:
    """The streams a stream-limited caller may see; None for every stream."""
    allowed = streams_of(request.user)
    return None if allowed is None else frozenset(allowed)


class CrossSiteRequest(Forbidden):
    title = "Cross-site request refused"


def check_origin(request: Request) -> None:
    """Refuse a browser request sent from another site (CSRF): its ``Origin`` must be this
    API's own (the Host it was sent to) or one of the configured CORS origins. A state-changing
    request that rides on the session cookie without an Origin is refused too: browsers send
    one with every such request."""
    origin = request.headers.get("origin")
    trusted: frozenset[str] = getattr(request.app.state, "cors_origins", frozenset())
    if origin is not None and (
        urlsplit(origin).netloc == request.headers.get("host", "") or origin in trusted
    ):
        return
    raise CrossSiteRequest(
        f"a request from {origin or 'an unknown origin'} may not act with this site's session "
        "cookie",
        AUTHENTICATED,
    )
