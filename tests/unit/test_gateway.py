"""What every response carries, and bodies only in the media types their route takes.

In-process (Starlette's TestClient, no engines): these checks happen before any handler runs.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from riverbed.core.settings import Settings
from tests.conftest import bearer
from tests.helpers.keys import make_identity, new_key

IDENTITY = make_identity()
CLIENT = TestClient(
    create_app(Settings(), identity=IDENTITY),
    raise_server_exceptions=False,
    base_url="http://127.0.0.1:8080",
    headers=bearer(new_key(IDENTITY.keys)),
)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/streams/pageviews/events", "text/plain"),  # what a cross-origin form may send
        ("/v1/streams/pageviews/events", "application/x-www-form-urlencoded"),
        ("/v1/query", ""),
        ("/v1/metrics", "multipart/form-data; boundary=x"),
        ("/registry/subjects/x-value/versions", "text/plain"),
    ],
)
def test_a_body_in_another_media_type_is_refused_before_it_is_read(
    path: str, content_type: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = CLIENT.post(path, content=b'{"sql": "SELECT 1"}', headers=headers)
    assert response.status_code == 415
    body = response.json()
    assert body["type"] == "urn:riverbed:problem:unsupported-media-type"
    assert "application/json" in body["accepted"]


def test_every_response_carries_the_security_headers_and_a_request_id() -> None:
    response = CLIENT.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert len(response.headers["x-request-id"]) == 32


def test_a_plain_request_id_is_echoed_and_anything_else_replaced() -> None:
    assert (
        CLIENT.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    replaced = CLIENT.get("/healthz", headers={"x-request-id": "<script>"})
    assert replaced.headers["x-request-id"] != "<script>"


def test_problems_have_a_stable_type_per_kind() -> None:
    missing = CLIENT.get("/no/such/route")
    assert missing.json()["type"] == "urn:riverbed:problem:http-error"


def test_an_unknown_query_parameter_is_a_400_naming_it() -> None:
    response = CLIENT.get("/v1/streams/pageviews/events", params={"limt": "5", "limit": "5"})
    assert response.status_code == 400
    body = response.json()
    assert body["parameters"] == ["limt"]
    assert "cursor, from, limit, to" in body["detail"]


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "attacker:8080"])
def test_on_loopback_a_rebound_host_name_is_refused(host: str) -> None:
    assert CLIENT.get("/healthz", headers={"host": host}).status_code == 400


@pytest.mark.parametrize("host", ["localhost:8080", "127.0.0.1", "[::1]:8080"])
def test_on_loopback_loopback_names_are_answered(host: str) -> None:
    assert CLIENT.get("/healthz", headers={"host": host}).status_code == 200


def test_listening_everywhere_the_configured_names_are_answered() -> None:
    app = create_app(
        Settings(host="0.0.0.0", allowed_hosts="riverbed.example.com"), identity=IDENTITY
    )
    client = TestClient(app, base_url="http://riverbed.example.com")
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 400
