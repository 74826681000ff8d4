"""Keys against the running pipeline: each role does its job and nothing more.

The keys are made as an admin makes them (the control-plane store of the pipeline's data dir)
and used by the API process, which reads the same store.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from api.endpoint import AUTHENTICATED, PUBLIC, Endpoint
from api.routes import ROUTES, SSE
from control.keys import ApiKeys, key_store
from control.scopes import ROLES
from riverbed.core.settings import Settings
from tests.conftest import Pipeline, api_client, wait_until

pytestmark = pytest.mark.integration

#: Things that exist in every pipeline, so that each GET route can answer 200.
PATH_VALUES = {
    "stream": "pageviews",
    "subject": "events.pageviews-value",
    "version": "1",
    "id": "1",
    "name": "pageviews",  # a stream's name gives its built-in metrics
    "table": "products",
    "key": "walk-entry",  # written by the walk's fixture
}
#: Query parameters a route needs to answer 200 about the things above.
QUERIES = {"registry_get_subject_config": {"defaultToGlobal": "true"}}
#: GET routes about something the walk cannot name in every pipeline.
NEEDS_A_DECLARED_METRIC = {"metric_results", "follow_metric"}


@pytest.fixture(scope="module")
def keys(pipeline: Pipeline) -> ApiKeys:
    with pipeline.client() as admin:  # an entry for GET /v1/reference/{table}/{key}
        admin.put("/v1/reference/products/walk-entry", json={"category": "c"}).raise_for_status()
        wait_until(
            lambda: admin.get("/v1/reference/products/walk-entry").status_code == 200,
            60,
            message="the API's copy of the reference topics to load",
        )
    return key_store(Settings(data_dir=pipeline.data_dir))


def view(page: str) -> dict[str, object]:
    return {"user_id": "u1", "page": page, "load_ms": 3.0, "ts": time.time_ns() // 1_000_000}


GETS = [
    e
    for e in ROUTES
    if e.method == "GET"
    and e.scope != PUBLIC
    and not e.mount
    and e.name not in NEEDS_A_DECLARED_METRIC
]


@pytest.mark.parametrize("endpoint", GETS, ids=lambda e: e.name)
def test_a_key_with_exactly_the_routes_scope_gets_a_2xx(
    pipeline: Pipeline, keys: ApiKeys, endpoint: Endpoint
) -> None:
    # Being someone (`authenticated`) is not granted; any key is someone.
    scopes = {endpoint.scope} if endpoint.scope != AUTHENTICATED else {"streams:read"}
    key, _ = keys.create(f"walk {endpoint.name}", scopes)
    path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], endpoint.path)
    with api_client(pipeline.base_url, key) as client:
        if endpoint.media == SSE:
            with client.stream("GET", path) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith(SSE)
        else:
            response = client.get(path, params=QUERIES.get(endpoint.name, {}))
            assert response.status_code == 200, response.text


def test_a_producer_posts_to_its_stream_and_nowhere_else(pipeline: Pipeline, keys: ApiKeys) -> None:
    key, _ = keys.create("shop", ROLES["producer"], streams=["pageviews"])
    with api_client(pipeline.base_url, key) as client:
        assert client.post("/v1/streams/pageviews/events", json=view("/own")).status_code == 202
        other = client.post("/v1/streams/purchases/events", json={"order_id": "o1"})
        assert other.status_code == 403
        assert "purchases" in other.json()["detail"]
        listed = client.get("/v1/streams").json()["streams"]
        assert [s["name"] for s in listed] == ["pageviews"]
        assert client.post("/v1/query", json={"sql": "SELECT 1"}).status_code == 403
        assert client.post("/v1/metrics", json={}).status_code == 403


def test_an_analyst_queries_but_cannot_write(pipeline: Pipeline, keys: ApiKeys) -> None:
    key, _ = keys.create("analyst", ROLES["analyst"])
    with api_client(pipeline.base_url, key) as client:
        assert client.post("/v1/query", json={"sql": "SELECT 1"}).status_code == 200
        assert client.post("/v1/streams/pageviews/events", json=view("/a")).status_code == 403
        refused = client.put("/registry/config", json={"compatibility": "NONE"})
        assert refused.status_code == 403
        assert refused.json()["required_scope"] == "registry:write"


def test_a_key_revoked_from_the_cli_stops_working_within_seconds(
    pipeline: Pipeline, keys: ApiKeys
) -> None:
    key, info = keys.create("short-lived", {"streams:read"})
    with api_client(pipeline.base_url, key) as client:
        assert client.get("/v1/streams").status_code == 200
        keys.revoke(info.prefix)
        wait_until(
            lambda: client.get("/v1/streams").status_code == 401,
            30,
            message="the revoked key to be refused",
        )


def test_anonymous_callers_get_401_and_health_stays_open(pipeline: Pipeline) -> None:
    assert httpx.get(f"{pipeline.base_url}/v1/streams").status_code == 401
    assert httpx.get(f"{pipeline.base_url}/healthz").status_code == 200


def test_an_event_stream_opens_with_a_stream_token_and_no_headers(pipeline: Pipeline) -> None:
    """What a browser's EventSource does: no Authorization header, the token in the URL."""
    with pipeline.client() as admin:
        made = admin.post("/v1/auth/stream-token")
    assert made.status_code == 200
    token = made.json()["stream_token"]
    url = f"{pipeline.base_url}/v1/live/metrics"
    with (
        httpx.Client(timeout=30) as browser,
        browser.stream("GET", url, params={"stream_token": token}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(SSE)
    assert httpx.get(url, params={"stream_token": token + "x"}).status_code == 401


def test_anonymous_readiness_says_ready_or_not_and_nothing_more(pipeline: Pipeline) -> None:
    anonymous = httpx.get(f"{pipeline.base_url}/readyz", timeout=30).json()
    assert set(anonymous) == {"ready", "draining", "components"}
    assert all(set(c) == {"ok"} for c in anonymous["components"].values())
    with pipeline.client() as client:
        detailed = client.get("/readyz").json()
    assert {"processes", "streams", "engine_restarts"} <= set(detailed)
