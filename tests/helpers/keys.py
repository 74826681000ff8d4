"""Identity for in-process apps: real control-plane stores (SQLite) in a directory of their own."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path

from api.auth import Identity
from control.db import database_url, open_store
from control.keys import ApiKeys
from control.scopes import GRANTABLE
from control.tokens import AccessTokens, RefreshTokens
from control.users import Users


def make_identity(directory: Path | None = None) -> Identity:
    """Fresh stores (a temporary directory unless given), migrated as at start-up, and a
    random signing secret."""
    directory = directory or Path(tempfile.mkdtemp(prefix="riverbed-identity-"))
    sessions = open_store(database_url(directory, None))
    return Identity(
        ApiKeys(sessions, GRANTABLE),
        Users(sessions),
        AccessTokens(secrets.token_bytes(32)),
        RefreshTokens(sessions),
    )


def new_key(
    keys: ApiKeys, scopes: Iterable[str] = GRANTABLE, streams: Iterable[str] | None = None
) -> str:
    key, _ = keys.create("test", scopes, streams)
    return key
