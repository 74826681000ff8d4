"""The Ingestor works without HTTP: what the route, dead-letter replay and connectors call."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from api.ingest.service import Draining, EventsRejected, Ingestor
from riverbed.core.first_copies import FirstCopies
from riverbed.core.kafka import AsyncProducer, producer_config
from riverbed.core.settings import Settings
from riverbed.core.topology import clean_topic, dlq_topic, events_topic
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


def with_first_copies(ingestor: Ingestor, redis_url: str) -> Ingestor:
    """The same Ingestor, telling copies of earlier requests apart (its client made on the
    running loop: redis' asyncio connections belong to the loop that opened them)."""
    return Ingestor(
        ingestor.catalog,
        ingestor.registry,
        ingestor.producer,
        first_copies=FirstCopies(aioredis.Redis.from_url(redis_url), 3600),
    )


def test_a_copy_of_an_earlier_requests_event_is_told_and_not_sent_again(
    pipeline: Pipeline, ingestor: Ingestor
) -> None:
    first, marker = f"ing-{uuid.uuid4().hex}", f"ing-{uuid.uuid4().hex}"

    async def post_twice_then_a_marker() -> tuple[Any, Any]:
        edge = with_first_copies(ingestor, pipeline.engines.redis.url)
        once = await edge.ingest("pageviews", [page_view(first)])
        again = await edge.ingest("pageviews", [page_view(marker), page_view(first)])
        return once, again

    once, again = asyncio.run(post_twice_then_a_marker())
    assert once.per_event() == [{"index": 0, "status": "accepted", "event_id": first}]
    assert again.event_ids == [marker]
    assert again.per_event()[1] == {
        "index": 1,
        "status": "duplicate",
        "event_id": first,
        "earlier_request": True,
    }
    topic = events_topic("pageviews")
    reader = TopicReader(pipeline, [topic], {first, marker})
    try:  # one key, one partition: the marker is read after anything sent before it
        wait_until(
            lambda: (reader.poll(), marker in reader.ids(topic))[1], 30, message="the marker"
        )
        assert len(reader.records[topic][first]) == 1
    finally:
        reader.close()


def test_racing_requests_with_one_event_id_accept_it_exactly_once(
    pipeline: Pipeline, ingestor: Ingestor
) -> None:
    ids = [f"race-{uuid.uuid4().hex}" for _ in range(20)]

    async def race() -> list[Any]:
        edges = [with_first_copies(ingestor, pipeline.engines.redis.url) for _ in range(2)]
        return await asyncio.gather(
            *(edge.ingest("pageviews", [page_view(i) for i in ids]) for edge in edges)
        )

    results = asyncio.run(race())
    for position, event_id in enumerate(ids):
        fates = sorted(r.per_event()[position]["status"] for r in results)
        assert fates == ["accepted", "duplicate"], event_id


def test_without_redis_every_event_is_sent_and_the_agents_drop_copies(
    pipeline: Pipeline, ingestor: Ingestor
) -> None:
    event_id, marker = f"ing-{uuid.uuid4().hex}", f"ing-{uuid.uuid4().hex}"

    async def post_twice() -> list[Any]:
        edge = with_first_copies(ingestor, "redis://127.0.0.1:1/0")  # nothing listens there
        return [
            await edge.ingest("pageviews", [page_view(e)]) for e in (event_id, event_id, marker)
        ]

    results = asyncio.run(post_twice())
    assert [r.event_ids for r in results] == [[event_id], [event_id], [marker]]
    topic = clean_topic("pageviews")
    reader = TopicReader(pipeline, [topic], {event_id, marker})
    try:  # one key, one partition: the agents pass the marker after both copies
        wait_until(
            lambda: (reader.poll(), marker in reader.ids(topic))[1], 60, message="the marker"
        )
        assert len(reader.records[topic][event_id]) == 1
    finally:
        reader.close()
