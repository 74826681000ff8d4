"""Login sessions: short-lived access tokens (JWT) and rotating refresh tokens (opaque).

Access tokens are JWTs signed with HS256 under a secret of at least 32 bytes. Verification pins
the algorithm and the key id (a token naming another algorithm, ``none`` included, or another
key is refused before its signature is looked at) and requires ``exp``, ``iat``, ``nbf``,
``iss``, ``aud``, ``sub`` and ``jti``. They live 15 minutes by default; the API also looks the
user up on each request (cached for seconds), so disabling a user does not wait for expiry.

Refresh tokens are random strings stored as SHA-256 digests. Each use returns a new one in the
same family and marks the old one used; presenting a used one again, past a short grace for a
response lost in transit, means two parties hold the family (one stole it), so every token of
the family is revoked.

The signing secret comes from ``RIVERBED_JWT_SECRET`` or ``RIVERBED_JWT_SECRET_FILE``. Listening
on loopback without one, Riverbed generates one into the data dir and says so; listening on a
network without one, or with a short or well-known one, it refuses to start.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from control.models import RefreshToken
from control.private_files import private_once
from control.signing import SigningKeys, load_asymmetric
from control.times import as_utc, utc_now
from control.users import UserInfo
from riverbed.core.errors import RiverbedError
from riverbed.core.settings import Settings

REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]
REFRESH_PREFIX = "rbr_"
MIN_SECRET = 32  # bytes
WELL_KNOWN = {b"secret", b"changeme", b"change-me", b"riverbed", b"password", b"jwt-secret"}
SECRET_FILE = "jwt.secret"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InvalidToken(RiverbedError):
    """Any token that does not verify: one answer, the reason kept for the log and detail."""

    status, title = 401, "Invalid token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="riverbed", error="invalid_token"'}


class MissingSecret(RiverbedError):
    """No usable signing secret where one is required."""


STREAM_AUDIENCE = "riverbed-stream"
STREAM_TTL = timedelta(seconds=60)


@dataclass(frozen=True)
class StreamClaims:
    subject: str  # user:<id> or key:<prefix>
    scopes: frozenset[str]
    streams: list[str] | None


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    username: str
    token_id: str
    expires_at: datetime


class AccessTokens:
    def __init__(
        self,
        keys: SigningKeys | bytes,
        issuer: str = "riverbed",
        audience: str = "riverbed-api",
        ttl: timedelta = timedelta(minutes=15),
    ) -> None:
        if isinstance(keys, bytes):
            check_secret(keys)
            keys = SigningKeys.hmac(keys)
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.key_id = keys.key_id

    def _sign(self, audience: str, subject: str, ttl: timedelta, **extra: Any) -> str:
        now = utc_now()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(12),
            **extra,
        }
        return jwt.encode(
            claims, self.keys.signing_key, self.keys.algorithm, headers={"kid": self.key_id}
        )

    def issue(self, user: UserInfo) -> tuple[str, int]:
        """A token for ``user`` and its lifetime in seconds."""
        token = self._sign(self.audience, str(user.id), self.ttl, name=user.username)
        return token, int(self.ttl.total_seconds())

    def issue_stream(
        self, subject: str, scopes: Iterable[str], streams: Iterable[str] | None
    ) -> tuple[str, int]:
        """A stream token: for ``EventSource``, which cannot send headers and so puts it in the
        URL (where logs may keep it). Hence a minute's life, an audience of its own (it is no
        access token), and only the scopes it was asked for."""
        token = self._sign(
            STREAM_AUDIENCE,
            subject,
            STREAM_TTL,
            scope=" ".join(sorted(scopes)),
            streams=None if streams is None else sorted(streams),
        )
        return token, int(STREAM_TTL.total_seconds())

    def verify_stream(self, token: str) -> StreamClaims:
        claims = self._decode(token, STREAM_AUDIENCE)
        streams = claims.get("streams")
        return StreamClaims(
            str(claims["sub"]),
            frozenset(str(claims.get("scope", "")).split()),
            None if streams is None else [str(s) for s in streams],
        )

    def verify(self, token: str) -> AccessClaims:
        claims = self._decode(token, self.audience)
        try:
            user_id = int(claims["sub"])
        except (TypeError, ValueError):
            raise InvalidToken("the token names no user") from None
        expires = datetime.fromtimestamp(claims["exp"], UTC)
        return AccessClaims(user_id, str(claims.get("name", "")), str(claims["jti"]), expires)

    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("not a token") from None
        algorithm = self.keys.algorithm
        if header.get("alg") != algorithm:
            raise InvalidToken(f"tokens are signed with {algorithm} only")
        key = self.keys.verifying.get(str(header.get("kid")))
        if key is None:
            raise InvalidToken("signed with an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired; get a new one") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the token does not verify: {exc}") from None
        return claims


class RefreshTokens:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        ttl: timedelta = timedelta(days=14),
        grace: timedelta = timedelta(seconds=10),
    ) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.grace = grace

    def issue(self, user_id: int) -> str:
        """The first token of a new family (a login)."""
        with self.sessions.begin() as session:
            return self._issue(session, user_id, secrets.token_hex(16))

    def _issue(self, session: Session, user_id: int, family: str) -> str:
        token = REFRESH_PREFIX + secrets.token_urlsafe(32)
        now = utc_now()
        session.add(
            RefreshToken(
                digest=_digest(token),
                family=family,
                user_id=user_id,
                issued_at=now,
                expires_at=now + self.ttl,
            )
        )
        return token

    def rotate(self, token: str) -> tuple[int, str]:
        """``(user id, the next token)`` for a valid token, which is used up by this."""
        failure: InvalidToken | None = None
        with self.sessions.begin() as session:
            row = session.scalar(select(RefreshToken).where(RefreshToken.digest == _digest(token)))
            now = utc_now()
            if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= now:
                raise InvalidToken("unknown, revoked or expired refresh token; log in again")
            if row.used_at is not None and now - as_utc(row.used_at) > self.grace:
                _revoke_family(session, row.family, now)
                failure = InvalidToken(
                    "this refresh token was already used: every session it belongs to is "
                    "revoked; log in again"
                )
            else:
                row.used_at = row.used_at or now
                following = self._issue(session, row.user_id, row.family)
                user_id = row.user_id
        if failure is not None:
            raise failure  # raised after the commit: the revocation must stand
        return user_id, following

    def revoke(self, token: str) -> None:
        """Log out: the token's whole family; unknown tokens are ignored (nothing to say)."""
        with self.sessions.begin() as session:
            row = session.scalar(select(RefreshToken).where(RefreshToken.digest == _digest(token)))
            if row is not None:
                _revoke_family(session, row.family, utc_now())


def _revoke_family(session: Session, family: str, now: datetime) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET or secret.strip().lower() in WELL_KNOWN:
        raise MissingSecret(
            f"the JWT secret must be at least {MIN_SECRET} random bytes and not a well-known "
            "default; make one with: openssl rand -hex 32"
        )


@dataclass(frozen=True)
class Secret:
    value: bytes
    generated: Path | None  # the file a development secret was generated into


def signing_keys(settings: Settings) -> tuple[SigningKeys, Path | None]:
    """The keys of ``settings`` and, when a development secret was generated, its file.

    ``RIVERBED_JWT_PRIVATE_KEY_FILE`` (PEM, Ed25519 or RSA) selects EdDSA or RS256, with
    ``RIVERBED_JWT_PUBLIC_KEYS_FILE`` holding older public keys during a rotation; otherwise
    HS256 with the secret of :func:`signing_secret`."""
    if settings.jwt_private_key_file is not None:
        return load_asymmetric(settings.jwt_private_key_file, settings.jwt_public_keys_file), None
    secret = signing_secret(settings)
    return SigningKeys.hmac(secret.value), secret.generated


def signing_secret(settings: Settings) -> Secret:
    """The configured secret; on loopback without one, a generated one kept in the data dir;
    otherwise :class:`MissingSecret`."""
    if settings.jwt_secret is not None:
        value = settings.jwt_secret.get_secret_value().encode()
    elif settings.jwt_secret_file is not None:
        value = settings.jwt_secret_file.read_bytes().strip()
    elif settings.on_loopback:
        path = settings.data_dir / SECRET_FILE
        generated = private_once(path, secrets.token_hex(32) + "\n")
        return Secret(generated.strip().encode(), generated=path)
    else:
        raise MissingSecret(
            f"listening on {settings.host}, Riverbed needs a secret to sign logins with: set "
            "RIVERBED_JWT_SECRET_FILE (or RIVERBED_JWT_SECRET) to 32 random bytes or more, "
            "e.g. openssl rand -hex 32"
        )
    check_secret(value)
    return Secret(value, generated=None)
