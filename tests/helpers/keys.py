"""API keys for in-process apps: a real control-plane store (SQLite) in a directory of its own."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from control.db import database_url, open_store
from control.keys import ApiKeys
from control.scopes import GRANTABLE


def key_store(directory: Path | None = None) -> ApiKeys:
    """A fresh store (a temporary directory unless given), migrated as at start-up."""
    directory = directory or Path(tempfile.mkdtemp(prefix="riverbed-keys-"))
    return ApiKeys(open_store(database_url(directory, None)), GRANTABLE)


def new_key(
    keys: ApiKeys, scopes: Iterable[str] = GRANTABLE, streams: Iterable[str] | None = None
) -> str:
    key, _ = keys.create("test", scopes, streams)
    return key
