"""Logging in and out, and what a caller may see and change of itself.

``/v1/auth/login`` and ``/v1/auth/refresh`` are public routes that carry their own credential
(a password, a refresh token); everything they answer with is a :class:`api.models.TokenPair`.
Password checks run in a thread and few at a time (``Identity.hashing``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.audit import note
from api.auth import (
    REFRESH_COOKIE,
    SESSION_COOKIE,
    Forbidden,
    Identity,
    KeyUser,
    UserPrincipal,
    check_origin,
)
from api.models import Login, PasswordChange, RefreshRequest, TokenPair, read_model
from control.scopes import AUTHENTICATED
from control.tokens import InvalidToken
from control.users import UserInfo
from riverbed.core.settings import Settings

SESSION_PATH = "/v1/auth/session"


def _identity(request: Request) -> Identity:
    identity: Identity = request.app.state.identity
    return identity


def _pair(identity: Identity, user: UserInfo, refresh_token: str) -> JSONResponse:
    access, expires_in = identity.access.issue(user)
    pair = TokenPair(access_token=access, expires_in=expires_in, refresh_token=refresh_token)
    # Tokens must not be kept by a browser's or a proxy's cache.
    return JSONResponse(pair.model_dump(), headers={"Cache-Control": "no-store"})


async def _log_in(request: Request) -> tuple[Identity, UserInfo, str]:
    """The body's username and password checked: the user and the first refresh token of a
    new login. Both ways of logging in (tokens, cookies) go through here."""
    body = await read_model(request, Login)
    note(request, username=body.username)  # for the audit trail, failed attempts included
    identity = _identity(request)
    user: UserInfo = await identity.hashing(
        identity.users.authenticate, body.username, body.password
    )
    refresh_token = await identity.blocking(identity.refresh.issue, user.id)
    return identity, user, refresh_token


async def _rotate(request: Request, token: str) -> tuple[Identity, UserInfo, str]:
    """The refresh token used up: its user, if still allowed in, and the next token."""
    identity = _identity(request)
    user_id, following = await identity.blocking(identity.refresh.rotate, token)
    note(request, user_id=user_id)
    user = await identity.blocking(identity.users.get, user_id)
    if user is None or user.disabled:
        await identity.blocking(identity.refresh.revoke, following)
        raise InvalidToken("the account of this login is disabled or gone")
    return identity, user, following


async def login(request: Request) -> JSONResponse:
    return _pair(*await _log_in(request))


async def refresh(request: Request) -> JSONResponse:
    body = await read_model(request, RefreshRequest)
    return _pair(*await _rotate(request, body.refresh_token))


async def logout(request: Request) -> Response:
    """Ends the login the refresh token belongs to (every token of its family); the access
    token lapses within its lifetime. Always 204: it tells nothing about the token."""
    body = await read_model(request, RefreshRequest)
    identity = _identity(request)
    await identity.blocking(identity.refresh.revoke, body.refresh_token)
    return Response(status_code=204)


def jwks(request: Request) -> JSONResponse:
    """The public keys that verify access tokens (none when they are signed with a secret)."""
    keys = _identity(request).access.keys.jwks()
    return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=300"})


def me(request: Request) -> JSONResponse:
    user = request.user
    scopes = sorted(set(request.auth.scopes) - {AUTHENTICATED})
    answer: dict[str, Any]
    if isinstance(user, UserPrincipal):
        answer = {"kind": "user", **user.info.to_public(), "scopes": scopes}
    else:
        assert isinstance(user, KeyUser)
        info = user.info
        answer = {
            "kind": "key",
            "prefix": info.prefix,
            "name": info.name,
            "scopes": scopes,
            "streams": info.streams,
            "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        }
    return JSONResponse(answer)


async def change_password(request: Request) -> Response:
    """Needs the current password; ends every other login of the user (their refresh tokens)."""
    user = request.user
    if not isinstance(user, UserPrincipal):
        raise Forbidden("API keys have no password; log in as a user", AUTHENTICATED)
    body = await read_model(request, PasswordChange)
    identity = _identity(request)
    await identity.hashing(
        identity.users.change_password, user.info.id, body.current_password, body.new_password
    )
    return Response(status_code=204)


# --- browser sessions: the same login, kept in HttpOnly cookies ------------------------------


def _set_cookies(
    request: Request, response: Response, identity: Identity, access: str, refresh_token: str
) -> None:
    settings: Settings = request.app.state.settings
    # Secure everywhere but plain http on loopback (development), where browsers accept it too.
    secure = request.url.scheme == "https" or not settings.on_loopback
    response.set_cookie(
        SESSION_COOKIE,
        access,
        max_age=int(identity.access.ttl.total_seconds()),
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=int(identity.refresh.ttl.total_seconds()),
        path=SESSION_PATH,
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"


def _same_site(request: Request) -> None:
    """Login CSRF: a page elsewhere must not log a browser into an account of its choosing."""
    if request.headers.get("origin") is not None:
        check_origin(request)


def _session(request: Request, identity: Identity, user: UserInfo, refresh_token: str) -> Response:
    access, expires_in = identity.access.issue(user)
    response = JSONResponse({"username": user.username, "expires_in": expires_in})
    _set_cookies(request, response, identity, access, refresh_token)
    return response


async def open_session(request: Request) -> Response:
    """Log in as ``/v1/auth/login`` does, but keep the tokens in HttpOnly cookies: a page's
    scripts never see them, and ``SameSite=Strict`` plus the Origin check keep other sites
    from using them."""
    _same_site(request)
    return _session(request, *await _log_in(request))


async def refresh_session(request: Request) -> Response:
    _same_site(request)
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise InvalidToken("no session to refresh; log in")
    return _session(request, *await _rotate(request, token))


async def close_session(request: Request) -> Response:
    _same_site(request)
    identity = _identity(request)
    token = request.cookies.get(REFRESH_COOKIE)
    if token:
        await identity.blocking(identity.refresh.revoke, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path=SESSION_PATH)
    return response


LIVE_SCOPES = ("metrics:read", "events:read", "alerts:read")  # what live routes need


async def stream_token(request: Request) -> JSONResponse:
    """A minute-long token that opens event streams (``?stream_token=``), with those of the
    caller's scopes that live routes need, its stream limits, and nothing else."""
    user = request.user
    scopes = [scope for scope in LIVE_SCOPES if scope in request.auth.scopes]
    if not scopes:
        raise Forbidden(
            f"stream tokens carry {', '.join(LIVE_SCOPES)}, and you have none", "metrics:read"
        )
    if isinstance(user, UserPrincipal):
        subject, streams = f"user:{user.info.id}", None
    elif isinstance(user, KeyUser):
        subject, streams = f"key:{user.info.prefix}", user.info.streams
    else:
        raise Forbidden("a stream token cannot make another", "metrics:read")
    token, expires_in = _identity(request).access.issue_stream(subject, scopes, streams)
    return JSONResponse(
        {"stream_token": token, "expires_in": expires_in}, headers={"Cache-Control": "no-store"}
    )
