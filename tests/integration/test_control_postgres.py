"""The production shape of the control plane: the API process on a PostgreSQL server
(``DATABASE_URL``), with keys an admin makes from another process."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from control.keys import key_store
from riverbed.core.settings import Settings
from tests.conftest import Engines, admin_key, api_client, start_components, wait_until
from tests.helpers.postgres import Postgres

pytestmark = pytest.mark.integration


def test_the_api_checks_keys_kept_in_postgresql(
    engines: Engines, postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.create_database(f"api_{uuid.uuid4().hex[:12]}")
    env = {**engines.env, "DATABASE_URL": url}
    supervisor, base = start_components(tmp_path, env, ["api"], timeout=90)
    try:
        admin = admin_key(tmp_path, url)
        keys = key_store(Settings(data_dir=tmp_path, database_url=url))
        reader, info = keys.create("dashboard", {"streams:read"})
        with api_client(base, admin) as as_admin, api_client(base, reader) as as_reader:
            assert as_admin.get("/v1/streams").status_code == 200
            assert as_reader.get("/v1/streams").status_code == 200
            assert as_reader.post("/v1/query", json={"sql": "SELECT 1"}).status_code == 403
            keys.revoke(info.prefix)
            wait_until(
                lambda: as_reader.get("/v1/streams").status_code == 401,
                30,
                message="the key revoked in PostgreSQL to be refused",
            )
        assert not (tmp_path / "control.db").exists()  # nothing fell back to SQLite
    finally:
        supervisor.stop()
