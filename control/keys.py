"""API keys: created once and shown once, stored as digests, scoped, expiring, revocable.

A key reads ``rb_<prefix>_<secret>``. The prefix (public, 12 hex characters) finds the row;
the secret (32 random bytes) is never stored, only its SHA-256 digest, compared in constant
time. A slow password hash (argon2id, for passwords) buys nothing for 256 random bits and would
cost every ingest request tens of milliseconds; a digest of them cannot be reversed or guessed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from control.db import control_sessions
from control.models import ApiKey
from control.scopes import GRANTABLE
from control.times import as_utc, utc_now
from riverbed.core.errors import Invalid, NotFound
from riverbed.core.settings import Settings

KEY_PREFIX = "rb_"
MAX_NAME = 200


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: everything but its secret."""

    prefix: str
    name: str
    scopes: list[str]
    streams: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    roles: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        return cls(
            row.prefix,
            row.name,
            list(row.scopes),
            None if row.streams is None else list(row.streams),
            as_utc(row.created_at) or utc_now(),
            as_utc(row.expires_at),
            as_utc(row.last_used_at),
            as_utc(row.revoked_at),
            list(row.roles or []),
        )

    def allows(self, scope: str, stream: str | None = None) -> bool:
        """Whether this key grants ``scope`` (on ``stream``, for stream-bound routes)."""
        if scope not in self.scopes:
            return False
        return stream is None or self.streams is None or stream in self.streams


class KeyNotFound(NotFound):
    title = "No such key"

    def __init__(self, prefix: str) -> None:
        super().__init__(f"no API key with prefix {prefix!r}")


class ApiKeys:
    """The API-key store; blocking (a database), so async callers use a thread."""

    def __init__(self, sessions: sessionmaker[Session], known_scopes: Iterable[str]) -> None:
        self.sessions = sessions
        self.known_scopes = frozenset(known_scopes)

    def create(
        self,
        name: str,
        scopes: Iterable[str],
        streams: Iterable[str] | None = None,
        expires_in: timedelta | None = None,
        roles: Iterable[str] = (),
    ) -> tuple[str, KeyInfo]:
        """A new key: ``(the key, shown only now, and what is stored about it)``; ``roles``
        are remembered (their scopes are the caller's to include in ``scopes``), so that
        per-role limits apply to the key."""
        scopes = sorted(set(scopes))
        unknown = sorted(set(scopes) - self.known_scopes)
        if not scopes or unknown:
            raise Invalid.at(
                "/scopes",
                f"unknown scopes {unknown}" if unknown else "a key needs at least one scope",
            )
        if not name.strip() or len(name) > MAX_NAME:
            raise Invalid.at("/name", f"a name of 1 to {MAX_NAME} characters")
        prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = utc_now()
        row = ApiKey(
            prefix=prefix,
            digest=_digest(secret),
            name=name.strip(),
            scopes=scopes,
            streams=None if streams is None else sorted(set(streams)),
            roles=sorted(set(roles)),
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        with self.sessions.begin() as session:
            session.add(row)
        return f"{KEY_PREFIX}{prefix}_{secret}", KeyInfo.of(row)

    def verify(self, key: str) -> KeyInfo | None:
        """The key's grants if it is known, unrevoked and unexpired; None otherwise (the
        caller answers 401 without saying which)."""
        if not key.startswith(KEY_PREFIX):
            return None
        prefix, _, secret = key[len(KEY_PREFIX) :].partition("_")
        with self.sessions.begin() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
            digest = _digest(secret)
            if row is None or not hmac.compare_digest(row.digest, digest):
                return None
            now = utc_now()
            expires = as_utc(row.expires_at)
            if row.revoked_at is not None or (expires is not None and expires <= now):
                return None
            row.last_used_at = now
            return KeyInfo.of(row)

    def revoke(self, prefix: str) -> KeyInfo:
        with self.sessions.begin() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
            if row is None:
                raise KeyNotFound(prefix)
            if row.revoked_at is None:
                row.revoked_at = utc_now()
            return KeyInfo.of(row)

    def has_active(self) -> bool:
        """Whether any key is unrevoked and unexpired (else the first start mints one)."""
        now = utc_now()
        return any(
            info.revoked_at is None and (info.expires_at is None or info.expires_at > now)
            for info in self.list()
        )

    def list(self) -> list[KeyInfo]:
        with self.sessions.begin() as session:
            rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()
            return [KeyInfo.of(row) for row in rows]


def key_store(settings: Settings) -> ApiKeys:
    """The API keys in the control-plane database of ``settings``, its schema brought up to
    date."""
    return ApiKeys(control_sessions(settings), GRANTABLE)
