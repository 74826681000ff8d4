"""A producer learns the fate of every event: from the answer (accepted, duplicate of an earlier
request, rejected), or from the dead letters by its id; and replay says what really happened."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from confluent_kafka import Producer

from riverbed.core.topology import events_topic
from schemas import codec
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from tests.conftest import Pipeline, wait_until

pytestmark = pytest.mark.e2e
TS = {"type": "long", "logicalType": "timestamp-millis"}


@pytest.fixture(scope="module")
def stream(pipeline: Pipeline) -> Iterator[str]:
    name = f"fate_{uuid.uuid4().hex[:6]}"
    fields = [
        {"name": "id", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "ts", "type": TS},
    ]
    body = {
        "name": name,
        "key_field": "id",
        "time_field": "ts",
        "schema": {"type": "record", "name": "Fate", "fields": fields},
    }
    with pipeline.client() as client:
        assert client.post("/v1/streams", json=body).status_code == 201
    yield name


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def letters(client: httpx.Client, stream: str, event_id: str) -> list[dict[str, Any]]:
    listed = client.get(f"/v1/streams/{stream}/dlq", params={"limit": 1000}).json()
    return [letter for letter in listed["dead_letters"] if letter["event_id"] == event_id]


def test_a_retry_of_an_accepted_event_is_answered_duplicate(
    pipeline: Pipeline, stream: str
) -> None:
    event = {"event_id": f"e-{uuid.uuid4().hex}", "id": "k", "n": 1, "ts": now_ms()}
    with pipeline.client() as client:
        first = client.post(f"/v1/streams/{stream}/events", json=event)
        retry = client.post(f"/v1/streams/{stream}/events", json=[event])
    assert first.status_code == 202 and first.json()["results"][0]["status"] == "accepted"
    assert retry.status_code == 202, retry.text
    assert retry.json()["accepted"] == 0 and retry.json()["event_ids"] == []
    assert retry.json()["results"] == [
        {"index": 0, "status": "duplicate", "event_id": event["event_id"], "earlier_request": True}
    ]


def test_replay_reports_a_letter_that_is_still_invalid_as_failed(
    pipeline: Pipeline, stream: str
) -> None:
    event_id = f"e-{uuid.uuid4().hex}"
    with pipeline.client() as client:
        refused = client.post(
            f"/v1/streams/{stream}/events", json={"event_id": event_id, "id": "k", "n": "one"}
        )
        assert refused.status_code == 400
        (letter,) = wait_until(
            lambda: letters(client, stream, event_id), 60, message="the ingest dead letter"
        )
        fixed = {"event_id": event_id, "id": "k", "n": 1, "ts": now_ms()}
        assert client.post(f"/v1/streams/{stream}/events", json=fixed).status_code == 202
        # The letter itself is still invalid: it fails, and says so.
        replay = client.post(
            f"/v1/streams/{stream}/dlq/replay", json={"ids": [letter["dlq_id"]]}
        ).json()
    assert replay["replayed"] == 0 and replay["replayed_ids"] == []
    (failed,) = replay["failed"]
    assert failed["dlq_id"] == letter["dlq_id"] and failed["reason"].startswith("still invalid")


def test_a_letter_whose_event_came_back_valid_is_skipped_as_a_duplicate(
    pipeline: Pipeline, stream: str
) -> None:
    """The letter lacked ``n``; the producer posted the event again, complete; once ``n`` has a
    default the letter is valid, but its event is already in the stream."""
    event_id = f"e-{uuid.uuid4().hex}"
    with pipeline.client() as client:
        refused = client.post(
            f"/v1/streams/{stream}/events", json={"event_id": event_id, "id": "k", "ts": now_ms()}
        )
        assert refused.status_code == 400  # n is required
        (letter,) = wait_until(
            lambda: letters(client, stream, event_id), 60, message="the ingest dead letter"
        )
        complete = {"event_id": event_id, "id": "k", "n": 2, "ts": now_ms()}
        assert client.post(f"/v1/streams/{stream}/events", json=complete).status_code == 202
        schema = client.get(f"/v1/streams/{stream}").json()["schema"]
        for field in schema["fields"]:
            if field["name"] == "n":
                field["default"] = 0
        assert (
            client.put(f"/v1/streams/{stream}/schema", json={"schema": schema}).status_code == 200
        )
        replay = client.post(
            f"/v1/streams/{stream}/dlq/replay", json={"ids": [letter["dlq_id"]]}
        ).json()
    assert replay["replayed"] == 0 and replay["failed"] == []
    (skipped,) = replay["skipped"]
    assert skipped["dlq_id"] == letter["dlq_id"] and skipped["reason"].startswith("duplicate")


def test_replay_does_not_count_a_record_the_agents_would_refuse_again(
    pipeline: Pipeline, stream: str
) -> None:
    """A record an agent dead-lettered (here: stamped a day ahead, produced past the API's own
    check) is reported failed by replay, with the agents' reason, and not put back."""
    client_redis = redis.Redis.from_url(pipeline.engines.redis.url)
    registry = SchemaRegistry(client_redis)
    catalog = StreamCatalog(client_redis, registry)
    event_id = f"e-{uuid.uuid4().hex}"
    datum = {
        "id": "k",
        "n": 3,
        "ts": now_ms() + 86_400_000,
        "event_id": event_id,
        "ingested_at": now_ms(),
    }
    producer = Producer({"bootstrap.servers": pipeline.engines.kafka.url})
    producer.produce(
        events_topic(stream), codec.encode(registry, catalog.ids(stream).ingest, datum), b"k"
    )
    assert producer.flush(10) == 0
    with pipeline.client() as client:
        (letter,) = wait_until(
            lambda: letters(client, stream, event_id), 60, message="the agents' dead letter"
        )
        assert letter["stage"] == "process"
        replay = client.post(
            f"/v1/streams/{stream}/dlq/replay", json={"ids": [letter["dlq_id"]]}
        ).json()
    assert replay["replayed"] == 0
    (failed,) = replay["failed"]
    assert failed["reason"].startswith("still fails") and "future" in failed["reason"]
