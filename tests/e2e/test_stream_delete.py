"""DELETE /v1/streams/{s}: intake stops, nothing accepted is lost, the name is free again."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Pipeline, wait_until

pytestmark = pytest.mark.e2e


def create(client: httpx.Client, name: str, n_type: str) -> None:
    body = {
        "name": name,
        "key_field": "id",
        "schema": {
            "type": "record",
            "name": "Doomed",
            "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": n_type}],
        },
    }
    response = client.post("/v1/streams", json=body)
    assert response.status_code == 201, response.text


def post(client: httpx.Client, name: str, events: list[dict[str, Any]]) -> None:
    response = client.post(f"/v1/streams/{name}/events", json=events)
    assert response.status_code == 202, response.text


def count(client: httpx.Client, table: str) -> int:
    rows = client.post("/v1/query", json={"sql": f"SELECT count() FROM {table} FINAL"})
    rows.raise_for_status()
    return int(rows.json()["rows"][0][0])


def test_deleting_a_stream_keeps_every_accepted_event_and_frees_the_name(
    pipeline: Pipeline,
) -> None:
    name = f"doomed_{uuid.uuid4().hex[:6]}"
    with pipeline.client() as client:
        create(client, name, "int")
        for batch in range(5):  # deleted right after: the drain must wait for these
            post(client, name, [{"id": f"{batch}-{i}", "n": i} for i in range(40)])
        deleted = client.delete(f"/v1/streams/{name}", timeout=90)
        assert deleted.status_code == 200, deleted.text
        report = deleted.json()
        assert report["kept_topics"] == [f"events.{name}", f"clean.{name}", f"dlq.{name}"]
        kept = report["table"]
        assert kept.startswith(f"riverbed.events_{name}__deleted_")
        assert count(client, kept) == 200  # every accepted event, processed before teardown

        assert client.get(f"/v1/streams/{name}").status_code == 404
        assert (
            client.post(f"/v1/streams/{name}/events", json={"id": "x", "n": 1}).status_code == 404
        )
        latest = client.get(f"/registry/subjects/events.{name}-value/versions/latest")
        assert latest.status_code == 404  # the subject's versions are (softly) deleted

        # The name is free, for a schema the old one could not have evolved to.
        create(client, name, "string")
        post(client, name, [{"id": "new", "n": "text"}])
        wait_until(
            lambda: count(client, f"riverbed.events_{name}") == 1,
            90,
            message="the new stream's event stored (agents and sink picked it up)",
        )
        purged = client.delete(f"/v1/streams/{name}", params={"purge": "true"}, timeout=90)
        assert purged.status_code == 200, purged.text
        assert purged.json()["table"] is None
        tables = client.post(
            "/v1/query",
            json={"sql": f"SELECT name FROM system.tables WHERE name = 'events_{name}'"},
        ).json()["rows"]
        assert tables == []
        # The first stream's kept table is still there.
        assert count(client, kept) == 200
    # The flow resumed from its snapshots with the deleted stream's partitions still among its
    # inputs (Bytewax refuses snapshots of partitions it no longer reads: it crash-looped).
    assert pipeline.crashes() == {}, pipeline.logs()


def test_a_stream_is_not_deleted_while_declared_metrics_use_it_or_it_is_in_the_file(
    pipeline: Pipeline,
) -> None:
    name = f"used_{uuid.uuid4().hex[:6]}"
    metric = f"m_{uuid.uuid4().hex[:6]}"
    with pipeline.client() as client:
        create(client, name, "int")
        declared = client.put(
            f"/v1/metrics/{metric}",
            json={
                "stream": name,
                "aggregations": ["count"],
                "window": {"type": "tumbling", "size": "1m"},
            },
        )
        assert declared.status_code in (200, 201), declared.text
        refused = client.delete(f"/v1/streams/{name}")
        assert refused.status_code == 409
        assert refused.json()["metrics"] == [metric]
        assert (
            client.post(f"/v1/streams/{name}/events", json={"id": "a", "n": 1}).status_code == 202
        )
        assert client.delete(f"/v1/metrics/{metric}").status_code in (200, 204)
        in_file = client.delete("/v1/streams/pageviews")
        assert in_file.status_code == 409
        assert "streams.toml" in in_file.json()["detail"]
        assert client.delete(f"/v1/streams/{name}", timeout=90).status_code == 200
