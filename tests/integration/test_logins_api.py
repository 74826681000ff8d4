"""People against the running API: log in, act within their roles, refresh, log out; admins
manage users and keys over HTTP, and what they take away is gone at once."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from control.db import control_sessions
from control.users import Users
from riverbed.core.settings import Settings
from tests.conftest import Pipeline, bearer

pytestmark = pytest.mark.integration
PASSWORD = "a password long enough"


def name(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def login(client: httpx.Client, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens: dict[str, Any] = response.json()
    return tokens


@pytest.fixture(scope="module")
def admin(pipeline: Pipeline) -> dict[str, str]:
    """An admin made from the shell, as `riverbed users create-admin` makes one."""
    username = name("admin")
    Users(control_sessions(Settings(data_dir=pipeline.data_dir))).create(
        username, PASSWORD, ["admin"]
    )
    with httpx.Client(base_url=pipeline.base_url, timeout=30) as client:
        return bearer(login(client, username)["access_token"])


def test_a_person_logs_in_and_acts_within_their_roles(
    pipeline: Pipeline, admin: dict[str, str]
) -> None:
    viewer = name("viewer")
    with httpx.Client(base_url=pipeline.base_url, timeout=30) as client:
        created = client.post(
            "/v1/users",
            headers=admin,
            json={"username": viewer, "password": PASSWORD, "roles": ["viewer"]},
        )
        assert created.status_code == 201, created.text
        assert "password" not in created.text
        tokens = login(client, viewer)
        as_viewer = bearer(tokens["access_token"])
        me = client.get("/v1/me", headers=as_viewer).json()
        assert me["kind"] == "user" and me["username"] == viewer and me["roles"] == ["viewer"]
        assert client.get("/v1/streams/pageviews/metrics", headers=as_viewer).status_code == 200
        refused = client.post("/v1/query", headers=as_viewer, json={"sql": "SELECT 1"})
        assert refused.status_code == 403 and "your roles" in refused.json()["detail"]

        fresh = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert fresh.status_code == 200
        assert client.get("/v1/me", headers=bearer(fresh.json()["access_token"])).is_success
        assert (
            client.post(
                "/v1/auth/logout", json={"refresh_token": fresh.json()["refresh_token"]}
            ).status_code
            == 204
        )
        after = client.post(
            "/v1/auth/refresh", json={"refresh_token": fresh.json()["refresh_token"]}
        )
        assert after.status_code == 401


def test_wrong_passwords_get_one_answer_then_a_lock(pipeline: Pipeline, admin: dict) -> None:
    username = name("target")
    with httpx.Client(base_url=pipeline.base_url, timeout=30) as client:
        client.post(
            "/v1/users",
            headers=admin,
            json={"username": username, "password": PASSWORD, "roles": ["viewer"]},
        ).raise_for_status()
        unknown = client.post(
            "/v1/auth/login", json={"username": name("nobody"), "password": "whatever it is"}
        )
        statuses = [
            client.post(
                "/v1/auth/login", json={"username": username, "password": "not the password"}
            ).status_code
            for _ in range(5)
        ]
        locked = client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert unknown.status_code == 401 and statuses == [401] * 5
    assert unknown.json()["detail"] == "wrong username or password"
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) <= 30


def test_disabling_a_user_ends_their_access_at_once(pipeline: Pipeline, admin: dict) -> None:
    username = name("leaver")
    with httpx.Client(base_url=pipeline.base_url, timeout=30) as client:
        client.post(
            "/v1/users",
            headers=admin,
            json={"username": username, "password": PASSWORD, "roles": ["analyst"]},
        ).raise_for_status()
        tokens = login(client, username)
        token = bearer(tokens["access_token"])
        assert client.get("/v1/me", headers=token).status_code == 200
        patched = client.patch(f"/v1/users/{username}", headers=admin, json={"disabled": True})
        assert patched.status_code == 200 and patched.json()["disabled"] is True
        assert client.get("/v1/me", headers=token).status_code == 401
        again = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert again.status_code == 401


def test_admins_make_and_revoke_keys_over_the_api(pipeline: Pipeline, admin: dict) -> None:
    with httpx.Client(base_url=pipeline.base_url, timeout=30) as client:
        made = client.post(
            "/v1/keys",
            headers=admin,
            json={"name": "shop", "roles": ["producer"], "streams": ["pageviews"]},
        )
        assert made.status_code == 201, made.text
        key, prefix = made.json()["key"], made.json()["prefix"]
        event = {"user_id": "u1", "page": "/k", "load_ms": 1.0, "ts": time.time_ns() // 1_000_000}
        posted = client.post("/v1/streams/pageviews/events", headers=bearer(key), json=event)
        assert posted.status_code == 202
        listed = client.get("/v1/keys", headers=admin).json()["keys"]
        assert prefix in {k["prefix"] for k in listed} and key not in str(listed)
        assert client.delete(f"/v1/keys/{prefix}", headers=admin).status_code == 200
        gone = client.post("/v1/streams/pageviews/events", headers=bearer(key), json=event)
        assert gone.status_code == 401  # revoked through the API: refused at once


def test_a_password_change_needs_the_current_one_and_ends_other_logins(
    pipeline: Pipeline, admin: dict
) -> None:
    username = name("mover")
    with httpx.Client(base_url=pipeline.base_url, timeout=30) as client:
        client.post(
            "/v1/users",
            headers=admin,
            json={"username": username, "password": PASSWORD, "roles": ["viewer"]},
        ).raise_for_status()
        tokens = login(client, username)
        token = bearer(tokens["access_token"])
        wrong = client.put(
            "/v1/me/password",
            headers=token,
            json={"current_password": "not it at all", "new_password": "another long password"},
        )
        assert wrong.status_code == 422
        changed = client.put(
            "/v1/me/password",
            headers=token,
            json={"current_password": PASSWORD, "new_password": "another long password"},
        )
        assert changed.status_code == 204
        old = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert old.status_code == 401
        login(client, username, "another long password")
