"""Reference entries over HTTP: write, read back at once, delete, and the errors in between."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Pipeline, wait_until

pytestmark = pytest.mark.integration


def test_an_entry_is_read_back_as_written_and_gone_once_deleted(pipeline: Pipeline) -> None:
    key = f"p-{uuid.uuid4().hex[:8]}"
    with pipeline.client() as client:
        wait_until(
            lambda: client.get("/v1/reference/products/none").status_code == 404,
            60,
            message="the API's copy of the reference topics to load",
        )
        put = client.put(f"/v1/reference/products/{key}", json={"category": "books"})
        assert put.status_code == 200, put.text
        read = client.get(f"/v1/reference/products/{key}")  # at once: the writer's own copy
        assert read.status_code == 200
        assert read.json() == {
            "table": "products",
            "key": key,
            "attributes": put.json()["attributes"],
        }
        assert client.delete(f"/v1/reference/products/{key}").status_code == 204
        assert client.get(f"/v1/reference/products/{key}").status_code == 404
        assert client.delete(f"/v1/reference/products/{key}").status_code == 204  # idempotent
        assert client.get(f"/v1/reference/nosuch/{key}").status_code == 404
