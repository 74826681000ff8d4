"""Browsers: HttpOnly cookie sessions that other sites cannot ride (CSRF), stream tokens for
EventSource, and CORS only for configured origins.

In-process (real stores, no engines): these are decided before a handler touches the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from riverbed.core.settings import Settings
from tests.conftest import bearer
from tests.helpers.keys import make_identity, new_key

IDENTITY = make_identity()
PASSWORD = "a long enough password"
IDENTITY.users.create("ada", PASSWORD, ["analyst"])
SITE = "http://127.0.0.1"
EVIL = "https://evil.example"


@pytest.fixture()
def browser() -> Iterator[TestClient]:
    """A fresh cookie jar; not entered as a context, so no lifespan (and no engines) runs."""
    app = create_app(Settings(), identity=IDENTITY)
    yield TestClient(app, raise_server_exceptions=False, base_url=SITE)


def log_in(client: TestClient) -> None:
    response = client.post(
        "/v1/auth/session", json={"username": "ada", "password": PASSWORD}, headers={"origin": SITE}
    )
    assert response.status_code == 200, response.text


def test_a_browser_login_keeps_its_tokens_in_httponly_strict_cookies(browser: TestClient) -> None:
    answer = browser.post(
        "/v1/auth/session", json={"username": "ada", "password": PASSWORD}, headers={"origin": SITE}
    )
    assert answer.status_code == 200 and "token" not in answer.text  # scripts never see them
    set_cookie = answer.headers.get_list("set-cookie")
    session = next(c for c in set_cookie if c.startswith("rb_session="))
    refresh = next(c for c in set_cookie if c.startswith("rb_refresh="))
    for cookie in (session, refresh):
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/v1/auth/session" in refresh  # the refresh token goes nowhere else
    me = browser.get("/v1/me")
    assert me.status_code == 200 and me.json()["username"] == "ada"


def test_a_cross_site_text_plain_post_riding_the_cookie_is_refused(browser: TestClient) -> None:
    """The classic CSRF: a form on another site posts text/plain to the API with the victim's
    cookie attached. Refused as cross-site, before the body is even looked at."""
    log_in(browser)
    response = browser.post(
        "/v1/query",
        content=b'{"sql": "SELECT 1"}',
        headers={"content-type": "text/plain", "origin": EVIL},
    )
    assert response.status_code == 403
    assert response.json()["type"] == "urn:riverbed:problem:cross-site-request"


def test_a_cookie_request_without_an_origin_is_refused_and_same_site_passes(
    browser: TestClient,
) -> None:
    log_in(browser)
    body = {"current_password": "not it at all", "new_password": "whatever long enough"}
    assert browser.put("/v1/me/password", json=body).status_code == 403
    same_site = browser.put("/v1/me/password", json=body, headers={"origin": SITE})
    assert same_site.status_code == 422  # through the check: the wrong current password


def test_another_site_cannot_log_a_browser_in(browser: TestClient) -> None:
    response = browser.post(
        "/v1/auth/session", json={"username": "ada", "password": PASSWORD}, headers={"origin": EVIL}
    )
    assert response.status_code == 403 and "rb_session" not in response.headers.get(
        "set-cookie", ""
    )


def test_logging_out_clears_the_cookies_and_ends_the_login(browser: TestClient) -> None:
    log_in(browser)
    refresh_cookie = browser.cookies.get("rb_refresh")
    assert browser.post("/v1/auth/session/refresh", headers={"origin": SITE}).status_code == 200
    assert browser.delete("/v1/auth/session", headers={"origin": SITE}).status_code == 204
    assert browser.get("/v1/me").status_code == 401
    browser.cookies.set("rb_refresh", refresh_cookie or "", path="/v1/auth/session")
    assert browser.post("/v1/auth/session/refresh", headers={"origin": SITE}).status_code == 401


def test_a_stream_token_opens_event_streams_and_nothing_else(browser: TestClient) -> None:
    key = new_key(IDENTITY.keys, {"metrics:read", "streams:read"}, streams=["pageviews"])
    made = browser.post("/v1/auth/stream-token", headers=bearer(key))
    assert made.status_code == 200 and made.json()["expires_in"] == 60
    token = made.json()["stream_token"]
    live = browser.get("/v1/live/metrics", params={"stream": "pageviews", "stream_token": token})
    assert live.status_code not in (401, 403)  # through the access check
    other = browser.get("/v1/live/metrics", params={"stream": "purchases", "stream_token": token})
    assert other.status_code == 403  # the key's stream limits travel with the token
    assert browser.get("/v1/streams", params={"stream_token": token}).status_code == 403
    assert browser.get("/v1/me", headers=bearer(token)).status_code == 401  # not an access token


def test_a_key_without_metrics_read_gets_no_stream_token(browser: TestClient) -> None:
    key = new_key(IDENTITY.keys, {"events:write"})
    assert browser.post("/v1/auth/stream-token", headers=bearer(key)).status_code == 403


def test_cors_is_off_by_default_and_answers_only_configured_origins() -> None:
    closed = TestClient(create_app(Settings(), identity=IDENTITY), base_url=SITE)
    preflight = {"origin": EVIL, "access-control-request-method": "POST"}
    assert (
        "access-control-allow-origin" not in closed.options("/v1/query", headers=preflight).headers
    )
    app = create_app(Settings(cors_origins="https://dash.example"), identity=IDENTITY)
    opened = TestClient(app, base_url=SITE)
    allowed = opened.options(
        "/v1/query",
        headers={
            "origin": "https://dash.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://dash.example"
    assert opened.options("/v1/query", headers=preflight).status_code == 400
