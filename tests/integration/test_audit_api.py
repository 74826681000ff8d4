"""The audit trail end to end: actions through the API, Avro events on the audit topic, rows in
ClickHouse, read back by an admin and by no one else."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from api.routes import ROUTES
from control.keys import key_store
from control.scopes import ROLES
from riverbed.core.settings import Settings
from tests.conftest import Pipeline, api_client, wait_until

pytestmark = pytest.mark.integration


def trail(client: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    response = client.get("/v1/audit", params=filters)
    response.raise_for_status()
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def test_security_relevant_actions_are_recorded_with_who_what_and_how(
    pipeline: Pipeline,
) -> None:
    keys = key_store(Settings(data_dir=pipeline.data_dir))
    analyst_key, analyst = keys.create("auditor test analyst", ROLES["analyst"])
    stranger = f"nobody-{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    with pipeline.client() as admin, api_client(pipeline.base_url, analyst_key) as as_analyst:
        made = admin.post("/v1/keys", json={"name": f"audited {marker}", "roles": ["viewer"]})
        assert made.status_code == 201
        failed = httpx.post(
            f"{pipeline.base_url}/v1/auth/login",
            json={"username": stranger, "password": "x" * 12},
        )
        assert failed.status_code == 401
        asked = as_analyst.post("/v1/query", json={"sql": f"SELECT '{marker}'"})
        assert asked.status_code == 200
        refused = as_analyst.put("/registry/config", json={"compatibility": "NONE"})
        assert refused.status_code == 403
        # The trail itself is not SQL-readable without audit:read (analysts lack it).
        peek = as_analyst.post("/v1/query", json={"sql": "SELECT count() FROM riverbed.audit"})
        assert peek.status_code == 400 and "audit:read" in peek.json()["detail"]
        assert admin.post(
            "/v1/query", json={"sql": "SELECT count() FROM riverbed.audit"}
        ).is_success

        def recorded() -> dict[str, dict[str, Any]] | None:
            found = {
                "create_key": [
                    e for e in trail(admin, action="create_key") if marker in e["details"]
                ],
                "login": [e for e in trail(admin, action="login") if stranger in e["details"]],
                "query": [e for e in trail(admin, action="query") if marker in e["details"]],
                "denied": trail(admin, actor=f"key:{analyst.prefix}", outcome="denied"),
            }
            if all(found.values()):
                return {name: rows[0] for name, rows in found.items()}
            return None

        events = wait_until(recorded, 60, interval=0.5, message="the audit rows in ClickHouse")
        own_prefix = admin.get("/v1/me").json()["prefix"]
        created = events["create_key"]
        assert created["actor"] == f"key:{own_prefix}" and created["outcome"] == "success"
        assert created["request_id"] == made.headers["x-request-id"]
        assert created["source_ip"] == "127.0.0.1"
        assert created["at"].endswith("Z") and "T" in created["at"]  # ISO-8601 UTC
        login = events["login"]
        assert login["actor"] == "anonymous" and login["outcome"] == "failure"
        assert login["status"] == 401 and "x" * 12 not in login["details"]  # no passwords
        query = events["query"]
        assert query["actor"] == f"key:{analyst.prefix}" and query["outcome"] == "success"
        denied = events["denied"]
        assert denied["action"] == "registry_put_global_config" and denied["status"] == 403

        assert as_analyst.get("/v1/audit").status_code == 403  # admins only


def test_changes_are_audited_and_event_posts_are_not() -> None:
    audited = {e.name for e in ROUTES if e.audited}
    assert "post_events" not in audited
    assert {"query", "login", "create_key", "revoke_key", "change_user", "create_stream"} <= audited
    assert all(e.audited for e in ROUTES if e.method != "GET" and e.name != "post_events")
