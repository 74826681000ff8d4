"""PUT /v1/metrics/{name}: declare or replace by name, over HTTP against the running API."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Pipeline

pytestmark = pytest.mark.integration


def declaration(*aggregations: str) -> dict[str, object]:
    return {
        "stream": "purchases",
        "aggregations": list(aggregations),
        "group_by": ["product"],
        "window": {"type": "tumbling", "size": "10s"},
    }


def test_a_metric_is_declared_then_replaced_by_name(pipeline: Pipeline) -> None:
    name = f"put_{uuid.uuid4().hex[:8]}"
    with pipeline.client() as client:
        created = client.put(f"/v1/metrics/{name}", json=declaration("count"))
        assert created.status_code == 201, created.text
        assert created.headers["location"] == f"/v1/metrics/{name}"
        replaced = client.put(f"/v1/metrics/{name}", json=declaration("count", "sum(price)"))
        assert replaced.status_code == 200, replaced.text
        got = client.get(f"/v1/metrics/{name}").json()
        assert got["aggregations"] == ["count", "sum(price)"] and got["source"] == "api"
        assert got["generation"] != created.json()["generation"]  # a new generation
        other = client.put(f"/v1/metrics/{name}", json={**declaration("count"), "name": "x"})
        assert other.status_code == 422
        assert [e["path"] for e in other.json()["errors"]] == ["/name"]
        broken = client.put(f"/v1/metrics/{name}", json=declaration("sum(product)"))
        assert broken.status_code == 422  # and the stored one is untouched:
        kept = client.get(f"/v1/metrics/{name}").json()["aggregations"]
        assert kept == ["count", "sum(price)"]
        assert client.put("/v1/metrics/purchases", json=declaration("count")).status_code == 409
        assert client.delete(f"/v1/metrics/{name}").status_code == 204
