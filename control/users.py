"""Users: people who log in, with roles, argon2id passwords, and a lockout that slows guessing.

Passwords are hashed with argon2id through argon2-cffi at its RFC 9106 "low memory" profile
(64 MiB, 3 passes, 4 lanes: stronger than OWASP's minimum of 19 MiB and 2 passes); a hash made
with weaker parameters is upgraded at the next successful login. Checks are constant-time, and
an unknown user costs the same hash as a known one, so timing does not tell which names exist.

After ``FREE_FAILURES`` wrong passwords in a row an account is locked for a time that doubles
with each further failure (30 s, 1 min, ... up to 15 min); a correct password resets it. The
lock answers before the password is checked, so a locked account gives a guesser nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from control.models import RefreshToken, User
from control.scopes import ROLES
from control.times import as_utc, utc_now
from riverbed.core.errors import Conflict, Invalid, NotFound, RiverbedError

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MIN_PASSWORD, MAX_PASSWORD = 12, 1024  # characters; the upper bound keeps hashing bounded
FREE_FAILURES = 5
FIRST_LOCK = timedelta(seconds=30)
LONGEST_LOCK = timedelta(minutes=15)


@dataclass(frozen=True)
class UserInfo:
    """What may be shown about a user: everything but the password hash."""

    id: int
    username: str
    roles: list[str]
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, row: User) -> UserInfo:
        return cls(
            row.id,
            row.username,
            list(row.roles),
            row.disabled,
            as_utc(row.created_at) or utc_now(),
            as_utc(row.last_login_at),
        )

    @property
    def scopes(self) -> frozenset[str]:
        """The union of the scopes of the user's roles."""
        return frozenset().union(*(ROLES[role] for role in self.roles if role in ROLES))

    def to_public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "username": self.username,
            "roles": self.roles,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


class LoginFailed(RiverbedError):
    """Wrong name or password, or a disabled account: one answer for all three."""

    status, title = 401, "Login failed"

    def __init__(self) -> None:
        super().__init__("wrong username or password")

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="riverbed"'}


class AccountLocked(RiverbedError):
    status, title = 429, "Too many failed logins"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong passwords; try again in {retry_after} s")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UserNotFound(NotFound):
    title = "No such user"

    def __init__(self, username: str) -> None:
        super().__init__(f"no user named {username!r}")


class UsernameTaken(Conflict):
    title = "Username taken"


def check_password(password: str, path: str = "/password") -> None:
    """Length rules only (NIST SP 800-63B): at least 12 characters, no composition rules."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Invalid.at(path, f"a password of {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def check_roles(roles: Iterable[str]) -> list[str]:
    roles = sorted(set(roles))
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise Invalid.at("/roles", f"unknown roles {unknown}; roles are {sorted(ROLES)}")
    return roles


class Users:
    """The user store; blocking (a database and a memory-hard hash), so async callers use a
    thread, and few at a time (``api.identity`` bounds the concurrent hashes)."""

    def __init__(
        self, sessions: sessionmaker[Session], hasher: PasswordHasher | None = None
    ) -> None:
        self.sessions = sessions
        self.hasher = hasher or PasswordHasher()
        # Verified against when the name is unknown, so that case costs a hash too.
        self._decoy = self.hasher.hash("riverbed decoy password")

    def create(self, username: str, password: str, roles: Iterable[str]) -> UserInfo:
        if not USERNAME.match(username):
            raise Invalid.at(
                "/username", "1 to 100 letters, digits or . _ @ -, starting with a letter or digit"
            )
        check_password(password)
        now = utc_now()
        row = User(
            username=username,
            password_hash=self.hasher.hash(password),
            roles=check_roles(roles),
            disabled=False,
            created_at=now,
            password_changed_at=now,
            failed_logins=0,
        )
        with self.sessions.begin() as session:
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                raise UsernameTaken(f"a user named {username!r} exists")
            session.add(row)
        return UserInfo.of(row)

    def authenticate(self, username: str, password: str) -> UserInfo:
        """The user, if the password is theirs and the account is usable; raises
        :class:`LoginFailed` or :class:`AccountLocked` otherwise."""
        if len(password) > MAX_PASSWORD:
            raise LoginFailed()
        # Decided inside the transaction, raised after it: a failure must still commit the
        # failure count.
        failure: RiverbedError | None = None
        with self.sessions.begin() as session:
            row = session.scalar(select(User).where(User.username == username))
            if row is None:
                self._verify(self._decoy, password)
                raise LoginFailed()
            now = utc_now()
            locked_until = as_utc(row.locked_until)
            if locked_until is not None and locked_until > now:
                raise AccountLocked(max(1, int((locked_until - now).total_seconds() + 0.999)))
            if not self._verify(row.password_hash, password) or row.disabled:
                if not row.disabled:
                    row.failed_logins += 1
                    over = row.failed_logins - FREE_FAILURES
                    if over >= 0:
                        row.locked_until = now + min(FIRST_LOCK * 2**over, LONGEST_LOCK)
                failure = LoginFailed()
            else:
                row.failed_logins, row.locked_until, row.last_login_at = 0, None, now
                if self.hasher.check_needs_rehash(row.password_hash):
                    row.password_hash = self.hasher.hash(password)
            info = UserInfo.of(row)
        if failure is not None:
            raise failure
        return info

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def change_password(self, user_id: int, current: str, new: str) -> None:
        """Needs the current password; signs the user out everywhere (refresh tokens revoked)."""
        check_password(new, "/new_password")
        with self.sessions.begin() as session:
            row = session.get(User, user_id)
            if row is None or not self._verify(row.password_hash, current):
                raise Invalid.at("/current_password", "not the current password")
            row.password_hash = self.hasher.hash(new)
            row.password_changed_at = utc_now()
            _revoke_tokens(session, user_id)

    def get(self, user_id: int) -> UserInfo | None:
        with self.sessions.begin() as session:
            row = session.get(User, user_id)
            return None if row is None else UserInfo.of(row)

    def by_name(self, username: str) -> UserInfo:
        with self.sessions.begin() as session:
            row = session.scalar(select(User).where(User.username == username))
            if row is None:
                raise UserNotFound(username)
            return UserInfo.of(row)

    def update(
        self, username: str, roles: Iterable[str] | None = None, disabled: bool | None = None
    ) -> UserInfo:
        """Change roles or disable; disabling also signs the user out everywhere."""
        with self.sessions.begin() as session:
            row = session.scalar(select(User).where(User.username == username))
            if row is None:
                raise UserNotFound(username)
            if roles is not None:
                row.roles = check_roles(roles)
            if disabled is not None:
                row.disabled = disabled
                if disabled:
                    _revoke_tokens(session, row.id)
                else:
                    row.failed_logins, row.locked_until = 0, None
            return UserInfo.of(row)

    def list(self) -> list[UserInfo]:
        with self.sessions.begin() as session:
            return [UserInfo.of(row) for row in session.scalars(select(User).order_by(User.id))]

    def has_admin(self) -> bool:
        return any("admin" in user.roles and not user.disabled for user in self.list())


def _revoke_tokens(session: Session, user_id: int) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utc_now())
    )
