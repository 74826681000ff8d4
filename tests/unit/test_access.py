"""Every route of the API, with every kind of credential: who gets 401, 403, or through.

Generated from the app's own route table (the one ``/openapi.json`` is built from), so a new
route is walked the day it is added: one marked public that is not on the short list below, or
one that answers an anonymous caller, fails here. In-process (no engines): the checks run
before any handler, so "gets through" is any answer but 401/403 from a handler that then finds
no services (a 500 here; the integration suite walks the same table to 2xx).
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.endpoint import AUTHENTICATED, PUBLIC, Endpoint
from api.openapi import build_openapi
from api.routes import ROUTES
from control.scopes import GRANTABLE, ROLES, SCOPES
from control.users import UserInfo
from riverbed.core.settings import Settings
from schemas.catalog import load_catalog
from tests.conftest import bearer
from tests.helpers.keys import make_identity, new_key

#: The only routes an anonymous caller may use: liveness, readiness, the API's description, the
#: live page (static files; its data comes with its own credential),
#: and the three that carry a credential of their own (a password, a refresh token).
PUBLIC_ROUTES = {
    "healthz",
    "readyz",
    "openapi",
    "docs",
    "live_page",
    "login",
    "refresh",
    "logout",
    "open_session",
    "refresh_session",
    "close_session",
    "jwks",
}
#: A value for each path parameter, so every route can be called.
PATH_VALUES = {
    "stream": "pageviews",
    "subject": "events.pageviews-value",
    "version": "1",
    "id": "1",
    "name": "page_latency",
    "table": "products",
    "key": "p1",
    "username": "someone",
    "prefix": "000000000000",
}

IDENTITY = make_identity()
KEYS = IDENTITY.keys
APP = create_app(Settings(), identity=IDENTITY)
CLIENT = TestClient(APP, raise_server_exceptions=False, base_url="http://127.0.0.1")
VIEWER = IDENTITY.users.create("viewer", "a long enough password", ["viewer"])


def token(user: UserInfo) -> str:
    """A fresh access token: issued when the test runs, so a long suite cannot outlive it."""
    return IDENTITY.access.issue(user)[0]


PROTECTED = [e for e in ROUTES if e.scope != PUBLIC]
#: Routes that need a scope beyond being someone (``authenticated``).
SCOPED = [e for e in PROTECTED if e.scope != AUTHENTICATED]


def url(endpoint: Endpoint) -> str:
    path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], endpoint.path)
    return path + "/" if endpoint.mount else path


def call(endpoint: Endpoint, headers: dict[str, str] | None = None, **params: str) -> int:
    body = {"content": b"{}", "headers": {"content-type": "application/json", **(headers or {})}}
    if endpoint.method in ("GET", "DELETE"):
        body.pop("content")
    response = CLIENT.request(endpoint.method, url(endpoint), params=params, **body)  # type: ignore[arg-type]
    if response.status_code in (401, 403):
        assert response.headers["content-type"] == "application/problem+json"
    return response.status_code


def test_the_walk_covers_every_operation_of_the_api_description() -> None:
    document = build_openapi(load_catalog(), ROUTES)
    described = {(p, m.upper()) for p, ops in document["paths"].items() for m in ops}
    assert described == {(e.path, e.method) for e in ROUTES}
    for endpoint in PROTECTED:
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        assert {"401", "403"} <= set(operation["responses"]), endpoint.name


def test_only_health_and_the_api_description_are_public() -> None:
    assert {e.name for e in ROUTES if e.scope == PUBLIC} == PUBLIC_ROUTES
    assert all(e.scope in SCOPES for e in ROUTES)


@pytest.mark.parametrize("endpoint", [e for e in ROUTES if e.scope == PUBLIC], ids=lambda e: e.name)
def test_public_routes_answer_without_a_key(endpoint: Endpoint) -> None:
    """The access check lets them through; what they answer is their own affair (a refresh
    without a refresh token is the handler's 401 ``invalid-token``)."""
    response = CLIENT.request(endpoint.method, url(endpoint))
    if response.headers.get("content-type") == "application/problem+json":
        kind = response.json()["type"]
        assert kind not in (f"{URN}unauthenticated", f"{URN}forbidden"), kind


URN = "urn:riverbed:problem:"


@pytest.mark.parametrize("endpoint", PROTECTED, ids=lambda e: e.name)
def test_without_a_key_every_other_route_is_a_401_with_a_challenge(endpoint: Endpoint) -> None:
    response = CLIENT.request(endpoint.method, url(endpoint))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert endpoint.scope in response.json()["detail"]


@pytest.mark.parametrize("endpoint", SCOPED, ids=lambda e: e.name)
def test_a_key_without_the_routes_scope_is_a_403_naming_it(endpoint: Endpoint) -> None:
    key = new_key(KEYS, GRANTABLE - {endpoint.scope})
    response = CLIENT.request(endpoint.method, url(endpoint), headers=bearer(key))
    assert response.status_code == 403
    assert response.json()["required_scope"] == endpoint.scope


@pytest.mark.parametrize("endpoint", PROTECTED, ids=lambda e: e.name)
def test_a_key_with_the_routes_scope_gets_through(endpoint: Endpoint) -> None:
    """A key with just that scope; for the routes about oneself, a person's login."""
    credential = (
        token(VIEWER) if endpoint.scope == AUTHENTICATED else new_key(KEYS, {endpoint.scope})
    )
    status = call(endpoint, bearer(credential), **stream_param(endpoint, "pageviews"))
    assert status not in (401, 403)


#: One login per role: the walk below is every route times every role.
ROLE_USERS = {
    role: IDENTITY.users.create(f"as-{role}", "a long enough password", [role]) for role in ROLES
}


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("endpoint", SCOPED, ids=lambda e: e.name)
def test_a_login_gets_what_its_role_grants_and_nothing_else(endpoint: Endpoint, role: str) -> None:
    status = call(endpoint, bearer(token(ROLE_USERS[role])), **stream_param(endpoint, "pageviews"))
    if endpoint.scope in ROLES[role]:
        assert status not in (401, 403)
    else:
        assert status == 403


def stream_param(endpoint: Endpoint, stream: str) -> dict[str, str]:
    return {"stream": stream} if any(p.name == "stream" for p in endpoint.params) else {}


@pytest.mark.parametrize("endpoint", SCOPED, ids=lambda e: e.name)
def test_a_key_limited_to_another_stream_is_refused(endpoint: Endpoint) -> None:
    """Another tenant's stream: refused on routes about one stream, and on routes that span
    every stream unless they show the caller only its own."""
    key = new_key(KEYS, {endpoint.scope}, streams=["purchases"])
    status = call(endpoint, bearer(key), **stream_param(endpoint, "pageviews"))
    if endpoint.filters_streams:
        assert status not in (401, 403)
    else:
        assert status == 403


def test_a_key_limited_to_a_stream_uses_that_stream() -> None:
    post = next(e for e in ROUTES if e.name == "post_events")
    key = new_key(KEYS, {"events:write"}, streams=["pageviews"])
    assert call(post, bearer(key)) not in (401, 403)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer rb_000000000000_" + "A" * 43,  # well formed, unknown
        "Bearer nonsense",
        "Bearer",
        "Token rb_x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-password").decode(),
        "Bearer " + "x" * 600,  # too long to be a key; not looked up
    ],
)
def test_a_wrong_credential_is_a_401_even_on_a_public_route(authorization: str) -> None:
    response = CLIENT.get("/healthz", headers={"authorization": authorization})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_the_key_may_be_the_password_of_basic_auth() -> None:
    """Confluent's schema-registry clients only speak Basic."""
    key = new_key(KEYS, {"registry:read"})
    basic = base64.b64encode(f"anyone:{key}".encode()).decode()
    response = CLIENT.get("/registry/subjects", headers={"authorization": f"Basic {basic}"})
    assert response.status_code not in (401, 403)


def test_a_revoked_key_is_refused_once_the_cache_forgets_it() -> None:
    key, info = KEYS.create("to revoke", {"streams:read"})
    streams = next(e for e in ROUTES if e.name == "list_streams")
    assert call(streams, bearer(key)) not in (401, 403)
    KEYS.revoke(info.prefix)
    APP.state.identity.key_cache.forget(info.prefix)  # what revoking through the API does
    assert call(streams, bearer(key)) == 401


def test_an_expired_key_is_refused() -> None:
    key, _ = KEYS.create("expired", {"streams:read"}, expires_in=timedelta(seconds=-1))
    streams = next(e for e in ROUTES if e.name == "list_streams")
    assert call(streams, bearer(key)) == 401


def test_keys_made_from_roles_get_what_the_roles_say() -> None:
    """Every role makes a key (the store refuses unknown scopes); an admin's key gets through
    every route, a producer's cannot query and an analyst's cannot post events."""
    role_keys = {role: new_key(KEYS, scopes) for role, scopes in ROLES.items()}
    for endpoint in SCOPED:
        status = call(endpoint, bearer(role_keys["admin"]), **stream_param(endpoint, "pageviews"))
        assert status not in (401, 403), endpoint.name
    query = next(e for e in ROUTES if e.name == "query")
    post = next(e for e in ROUTES if e.name == "post_events")
    assert call(query, bearer(role_keys["producer"])) == 403
    assert call(post, bearer(role_keys["analyst"])) == 403


def test_unauthorised_callers_learn_nothing_about_parameters() -> None:
    """The scope is checked before the route's own checks (unknown parameters, media type)."""
    events = next(e for e in ROUTES if e.name == "list_events")
    assert call(events, limt="5") == 401
    key = new_key(KEYS, {"streams:read"})
    assert call(events, bearer(key), limt="5") == 403
