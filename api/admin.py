"""Managing people and keys over the API: what ``riverbed users`` and ``riverbed keys`` do.

Users are created by admins (there is no self-registration). A change that takes access away
(a revoked key, a disabled user, new roles) is forgotten by this process's caches at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.audit import note
from api.auth import Identity
from api.models import NewKey, NewUser, UserChange, read_model
from control.keys import KeyInfo
from control.scopes import ROLES
from control.users import UserInfo
from riverbed.core.errors import Invalid


def _identity(request: Request) -> Identity:
    identity: Identity = request.app.state.identity
    return identity


async def list_users(request: Request) -> JSONResponse:
    identity = _identity(request)
    users: list[UserInfo] = await identity.blocking(identity.users.list)
    return JSONResponse({"users": [u.to_public() for u in users]})


async def create_user(request: Request) -> JSONResponse:
    body = await read_model(request, NewUser)
    note(request, username=body.username, roles=body.roles)
    identity = _identity(request)
    user: UserInfo = await identity.hashing(
        identity.users.create, body.username, body.password, body.roles
    )
    return JSONResponse(user.to_public(), status_code=201)


async def change_user(request: Request) -> JSONResponse:
    body = await read_model(request, UserChange)
    note(request, roles=body.roles, disabled=body.disabled)
    if body.roles is None and body.disabled is None:
        raise Invalid.at("", "send roles, disabled, or both")
    identity = _identity(request)
    user: UserInfo = await identity.blocking(
        identity.users.update, request.path_params["username"], body.roles, body.disabled
    )
    identity.user_cache.forget(user.id)
    return JSONResponse(user.to_public())


def _key_public(info: KeyInfo) -> dict[str, Any]:
    return {
        "prefix": info.prefix,
        "name": info.name,
        "scopes": info.scopes,
        "streams": info.streams,
        "roles": info.roles,
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }


async def list_keys(request: Request) -> JSONResponse:
    identity = _identity(request)
    keys: list[KeyInfo] = await identity.blocking(identity.keys.list)
    return JSONResponse({"keys": [_key_public(info) for info in keys]})


async def create_key(request: Request) -> JSONResponse:
    """The key is in this answer and nowhere else, ever."""
    body = await read_model(request, NewKey)
    unknown = sorted(set(body.roles) - set(ROLES))
    if unknown:
        raise Invalid.at("/roles", f"unknown roles {unknown}; roles are {sorted(ROLES)}")
    scopes = set(body.scopes).union(*(ROLES[role] for role in body.roles))
    note(request, name=body.name, scopes=sorted(scopes), streams=body.streams)
    expires = timedelta(days=body.expires_days) if body.expires_days else None
    identity = _identity(request)
    key, info = await identity.blocking(
        identity.keys.create, body.name, scopes, body.streams, expires, body.roles
    )
    return JSONResponse(
        {"key": key, **_key_public(info)}, status_code=201, headers={"Cache-Control": "no-store"}
    )


async def revoke_key(request: Request) -> JSONResponse:
    identity = _identity(request)
    info: KeyInfo = await identity.blocking(identity.keys.revoke, request.path_params["prefix"])
    identity.key_cache.forget(info.prefix)
    return JSONResponse(_key_public(info))
