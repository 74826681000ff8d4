"""API keys in the control-plane store (a real SQLite file, migrated by Alembic)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from control.db import database_url, open_store
from control.keys import ApiKeys, KeyNotFound
from control.models import ApiKey
from control.scopes import ROLES
from riverbed.cli import main
from riverbed.core.errors import Invalid
from tests.helpers.postgres import Postgres

SCOPES = {"events:write", "events:read", "query:sql"}


@pytest.fixture(params=["sqlite", "postgresql"])
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> ApiKeys:
    """The store on each database Riverbed supports: SQLite in the data dir by default, and a
    real PostgreSQL server (a database of its own per test) as with DATABASE_URL."""
    if request.param == "sqlite":
        url = database_url(tmp_path, None)
    else:
        server: Postgres = request.getfixturevalue("postgres")
        url = server.create_database(f"keys_{uuid.uuid4().hex[:12]}")
    return ApiKeys(open_store(url), SCOPES)


def test_a_key_is_shown_once_and_only_its_digest_is_stored(tmp_path: Path) -> None:
    keys = ApiKeys(open_store(database_url(tmp_path, None)), SCOPES)
    key, info = keys.create("shop producer", ["events:write"], ["purchases"])
    assert key.startswith(f"rb_{info.prefix}_")
    secret = key.split("_", 2)[2]
    database = b"".join(p.read_bytes() for p in tmp_path.glob("control.db*"))
    assert secret.encode() not in database
    granted = keys.verify(key)
    assert granted is not None and granted.scopes == ["events:write"]
    assert granted.allows("events:write", "purchases")
    assert not granted.allows("events:write", "pageviews")
    assert not granted.allows("query:sql")


MANGLED: list[Callable[[str], str]] = [
    lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # one character of the secret
    lambda k: "x" + k,  # not a key at all
    lambda k: "rb_000000000000_" + k.split("_", 2)[2],  # the secret under another prefix
    lambda k: "",
]


@pytest.mark.parametrize("mangle", MANGLED)
def test_a_wrong_or_malformed_key_is_refused(keys: ApiKeys, mangle: Callable[[str], str]) -> None:
    key, _ = keys.create("p", ["events:write"])
    assert keys.verify(mangle(key)) is None


def test_revoked_and_expired_keys_are_refused(keys: ApiKeys) -> None:
    revoked, info = keys.create("old", ["events:read"])
    keys.revoke(info.prefix)
    assert keys.verify(revoked) is None
    expired, _ = keys.create("short", ["events:read"], expires_in=timedelta(seconds=-1))
    assert keys.verify(expired) is None
    with pytest.raises(KeyNotFound):
        keys.revoke("ffffffffffff")


def test_use_is_recorded_and_listing_never_shows_a_secret(keys: ApiKeys) -> None:
    key, info = keys.create("dashboard", ["events:read"])
    assert keys.list()[0].last_used_at is None
    keys.verify(key)
    [listed] = keys.list()
    assert listed.prefix == info.prefix and listed.last_used_at is not None
    assert key.split("_", 2)[2] not in repr(listed)


@pytest.mark.parametrize(
    ("name", "scopes"), [("p", ["events:delete"]), ("p", []), ("", ["events:read"])]
)
def test_a_key_needs_a_name_and_known_scopes(keys: ApiKeys, name: str, scopes: list[str]) -> None:
    with pytest.raises(Invalid):
        keys.create(name, scopes)


def test_migrations_run_again_without_harm(tmp_path: Path) -> None:
    url = database_url(tmp_path, None)
    first = ApiKeys(open_store(url), SCOPES)
    key, _ = first.create("p", ["events:write"])
    again = ApiKeys(open_store(url), SCOPES)  # a restart migrates again
    assert again.verify(key) is not None


def test_the_cli_creates_lists_and_revokes_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RIVERBED_DATA_DIR", str(tmp_path))
    assert main(["keys", "create", "--name", "shop", "--scope", "events:write"]) == 0
    key = capsys.readouterr().out.strip()
    prefix = key.split("_")[1]
    assert main(["keys", "list"]) == 0
    assert prefix in capsys.readouterr().out
    assert main(["keys", "revoke", prefix]) == 0
    assert main(["keys", "create", "--name", "x", "--scope", "nonsense"]) == 2


def test_only_digests_reach_the_database(keys: ApiKeys) -> None:
    key, info = keys.create("p", ["events:write"])
    with keys.sessions.begin() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == info.prefix))
        assert row is not None
        assert row.digest != key.split("_", 2)[2] and len(row.digest) == 64


@pytest.mark.parametrize(
    "url",
    [
        "postgres://rb:pw@db:5432/riverbed",
        "postgresql://rb:pw@db:5432/riverbed",
        "postgresql+psycopg2://rb:pw@db:5432/riverbed",
    ],
)
def test_libpq_style_urls_mean_the_shipped_driver(tmp_path: Path, url: str) -> None:
    assert database_url(tmp_path, url) == "postgresql+psycopg://rb:pw@db:5432/riverbed"


def test_concurrent_starts_migrate_once(postgres: Postgres) -> None:
    """API replicas starting together on one PostgreSQL database: the advisory lock makes the
    others wait for the first one's migration instead of failing on its tables."""
    url = postgres.create_database(f"race_{uuid.uuid4().hex[:12]}")
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: ApiKeys(open_store(url), SCOPES), range(4)))
    key, _ = stores[0].create("p", ["events:read"])
    assert all(store.verify(key) is not None for store in stores)


def test_the_cli_grants_a_roles_scopes_limited_to_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RIVERBED_DATA_DIR", str(tmp_path))
    args = ["keys", "create", "--name", "shop", "--role", "producer", "--stream", "purchases"]
    assert main(args) == 0
    key = capsys.readouterr().out.strip()
    granted = ApiKeys(open_store(database_url(tmp_path, None)), ROLES["admin"]).verify(key)
    assert granted is not None and set(granted.scopes) == ROLES["producer"]
    assert granted.allows("events:write", "purchases")
    assert not granted.allows("events:write", "pageviews")
    assert main(["keys", "create", "--name", "nothing"]) == 2  # neither a role nor a scope
    assert "--role" in capsys.readouterr().err
