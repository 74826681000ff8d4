"""The Ingestor works without HTTP: what the route, dead-letter replay and connectors call."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from api.ingest.service import Draining, EventsRejected, Ingestor
from riverbed.core.kafka import AsyncProducer, producer_config
from riverbed.core.settings import Settings
from riverbed.core.topology import dlq_topic, events_topic
from schemas.bootstrap import join_catalog
from tests.conftest import Pipeline, wait_until
from tests.helpers.topics import TopicReader

pytestmark = pytest.mark.integration


def page_view(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "user_id": "u-ingestor",
        "page": "/ingestor",
        "load_ms": 12.5,
        "ts": time.time_ns() // 1_000_000,
        **overrides,
    }


@pytest.fixture()
def ingestor(pipeline: Pipeline) -> Any:
    settings = Settings(
        kafka_bootstrap=pipeline.engines.kafka.url, redis_url=pipeline.engines.redis.url
    )
    registry, catalog = join_catalog(settings, timeout=30)
    producer = AsyncProducer(producer_config(settings))
    yield Ingestor(catalog, registry, producer)
    producer.close()


def test_ingested_events_are_in_kafka_and_rejects_in_the_dlq_with_every_problem(
    pipeline: Pipeline, ingestor: Ingestor
) -> None:
    ok, bad = f"ing-{uuid.uuid4().hex}", f"ing-{uuid.uuid4().hex}"
    events = [page_view(ok), page_view(bad, load_ms="slow", extra=1)]
    result = asyncio.run(ingestor.ingest("pageviews", events))
    assert result.event_ids == [ok]
    assert [(e["index"], e["path"]) for e in result.errors()] == [(1, "/extra"), (1, "/load_ms")]
    assert [e["status"] for e in result.per_event()] == ["accepted", "rejected"]
    reader = TopicReader(pipeline, [events_topic("pageviews"), dlq_topic("pageviews")], {ok, bad})
    try:
        wait_until(
            lambda: (
                (reader.poll(), reader.ids(events_topic("pageviews")) == {ok})[1]
                and reader.ids(dlq_topic("pageviews")) == {bad}
            ),
            30,
            message="the accepted event in events.pageviews and the reject in dlq.pageviews",
        )
        assert reader.record(events_topic("pageviews"), ok)["page"] == "/ingestor"
        letter = reader.record(dlq_topic("pageviews"), bad)
        assert letter["stage"] == "ingest"
        assert "/extra" in letter["error"] and "/load_ms" in letter["error"]
    finally:
        reader.close()


def test_an_atomic_call_with_one_invalid_event_produces_nothing(
    pipeline: Pipeline, ingestor: Ingestor
) -> None:
    ok, bad = f"ing-{uuid.uuid4().hex}", f"ing-{uuid.uuid4().hex}"
    with pytest.raises(EventsRejected) as refused:
        asyncio.run(
            ingestor.ingest("pageviews", [page_view(ok), page_view(bad, page=3)], atomic=True)
        )
    assert refused.value.extra()["errors"][0]["index"] == 1
    marker = f"ing-{uuid.uuid4().hex}"  # posted after: once it is read, the others would be
    asyncio.run(ingestor.ingest("pageviews", [page_view(marker)]))
    topics = [events_topic("pageviews"), dlq_topic("pageviews")]
    reader = TopicReader(pipeline, topics, {ok, bad, marker})
    try:
        wait_until(
            lambda: (reader.poll(), marker in reader.ids(events_topic("pageviews")))[1],
            30,
            message="the marker event",
        )
        reader.poll()
        assert not {ok, bad} & (reader.ids(topics[0]) | reader.ids(topics[1]))
    finally:
        reader.close()


def test_a_closed_ingestor_accepts_nothing(ingestor: Ingestor) -> None:
    ingestor.close()
    with pytest.raises(Draining):
        asyncio.run(ingestor.ingest("pageviews", [page_view(f"ing-{uuid.uuid4().hex}")]))
