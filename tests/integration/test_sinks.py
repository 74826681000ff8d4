"""Sink semantics against real engines: valkey for live values, chdb + tansu for ClickHouse."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Message, Producer

from riverbed.core.clickhouse import ChdbEngine
from riverbed.core.kafka import ensure_topics
from riverbed.core.redis import as_text
from riverbed.core.settings import Settings
from riverbed.core.topology import (
    LIVE_CHANNEL,
    METRIC_RESULTS_TOPIC,
    METRICS_TOPIC,
    clean_topic,
    dlq_topic,
    latest_key,
    results_series_key,
    series_key,
)
from riverbed.core.window_versions import SHOWN_VERSION_SQL
from riverbed.embedded import start_kafka
from schemas import codec
from schemas.bootstrap import pipeline_topics
from schemas.catalog import BUNDLED_DIR, StreamSpec, load_catalog
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from sinks.clickhouse_writer import ClickHouseWriter
from sinks.ddl import create_metrics_table, window_flow_version
from sinks.dead_letters import DeadLetters
from sinks.redis_writer import RedisMetricsWriter
from tests.conftest import Engines, wait_until

pytestmark = pytest.mark.integration


def update(stream: str, group: str, start: int, version: int, count: int) -> dict:
    return {
        "stream": stream,
        "group": group,
        "field": "*",
        "window_start": start,
        "window_end": start + 1000,
        "count": count,
        "sum": float(count),
        "min": None,
        "max": None,
        "avg": None,
        "final": False,
        "version": version,
    }


@pytest.fixture()
def metrics_writer(engines: Engines) -> RedisMetricsWriter:
    client = redis.Redis.from_url(engines.redis.url)
    return RedisMetricsWriter(client, SchemaRegistry(client), series_length=3)


def test_redis_upsert_keeps_the_highest_version_of_a_window(
    metrics_writer: RedisMetricsWriter,
) -> None:
    stream = f"s{uuid.uuid4().hex[:6]}"
    applied = metrics_writer.apply([update(stream, "g", 0, 2, 20), update(stream, "g", 0, 1, 10)])
    assert applied == [True, False]
    (value,) = metrics_writer.client.zrange(series_key(stream, "*", "g"), 0, -1)
    assert json.loads(value)["count"] == 20


def test_redis_ranks_finals_by_the_events_they_count(metrics_writer: RedisMetricsWriter) -> None:
    """A later final with fewer events (a window computed again from part of its events, after
    a broker refilled from the journal) must not replace the final value; one with more (a
    window the idle clock closed, amended by an event that was not late) must."""
    stream = f"s{uuid.uuid4().hex[:6]}"
    final = {**update(stream, "g", 0, 5, 10), "final": True}
    applied = metrics_writer.apply(
        [
            final,
            update(stream, "g", 0, 9, 3),  # a running value after the final
            {**update(stream, "g", 0, 10, 4), "final": True},  # computed again, from part
            {**update(stream, "g", 0, 11, 11), "final": True},  # amended
            {**update(stream, "g", 0, 8, 11), "final": True},  # as many events, older
        ]
    )
    assert applied == [True, False, False, True, False]
    (value,) = metrics_writer.client.zrange(series_key(stream, "*", "g"), 0, -1)
    assert (json.loads(value)["count"], json.loads(value)["version"]) == (11, 11)


def test_redis_lets_a_retraction_remove_a_final_session(
    metrics_writer: RedisMetricsWriter,
) -> None:
    """A session the idle clock closed can merge into an earlier one when an event that is not
    late bridges them: its final value must go."""
    metric = f"m{uuid.uuid4().hex[:6]}"

    def result(start: int, version: int, count: int, **more: bool) -> dict:
        return {
            "metric": metric,
            "generation": "g1",
            "stream": "s",
            "group_key": "*",
            "group": {},
            "window_start": start,
            "window_end": start + 1000,
            "count": count,
            "values": {},
            "final": True,
            "deleted": False,
            "version": version,
            **more,
        }

    applied = metrics_writer.apply_results(
        [result(5000, 1, 2), result(5000, 2, 0, deleted=True), result(3000, 2, 3)]
    )
    assert applied == [True, True, True]
    series = metrics_writer.client.zrange(results_series_key(metric, "*"), 0, -1)
    assert [json.loads(v)["window_start"] for v in series] == [3000]


def test_redis_latest_never_moves_back_to_an_older_window(
    metrics_writer: RedisMetricsWriter,
) -> None:
    stream = f"s{uuid.uuid4().hex[:6]}"
    metrics_writer.apply([update(stream, "g", 2000, 5, 1), update(stream, "g", 1000, 9, 7)])
    latest = json.loads(metrics_writer.client.hget(latest_key(stream), "*|g"))
    assert latest["window_start"] == 2000
    assert len(metrics_writer.client.zrange(series_key(stream, "*", "g"), 0, -1)) == 2


def test_redis_series_is_bounded_to_the_most_recent_windows(
    metrics_writer: RedisMetricsWriter,
) -> None:
    stream = f"s{uuid.uuid4().hex[:6]}"
    metrics_writer.apply([update(stream, "g", start * 1000, 1, start) for start in range(6)])
    kept = [
        json.loads(v)["window_start"]
        for v in metrics_writer.client.zrange(series_key(stream, "*", "g"), 0, -1)
    ]
    assert kept == [3000, 4000, 5000]


def test_redis_upsert_logs_each_applied_update_and_nothing_else(
    metrics_writer: RedisMetricsWriter,
) -> None:
    stream = f"s{uuid.uuid4().hex[:6]}"
    client = metrics_writer.client
    before = (
        client.xinfo_stream(LIVE_CHANNEL)["last-generated-id"]
        if client.exists(LIVE_CHANNEL)
        else "0-0"
    )
    metrics_writer.apply([update(stream, "g", 0, 2, 3), update(stream, "g", 0, 1, 1)])
    logged = [
        json.loads(fields[b"u"])
        for _, fields in client.xrange(LIVE_CHANNEL, min=f"({as_text(before)}", max="+")
    ]
    mine = [entry for entry in logged if entry["stream"] == stream]
    assert [entry["version"] for entry in mine] == [2]  # the stale version 1 was not logged


def test_the_live_log_is_trimmed_to_about_its_history(engines: Engines) -> None:
    client = redis.Redis.from_url(engines.redis.url.rsplit("/", 1)[0] + "/11")  # its own
    client.flushdb()
    writer = RedisMetricsWriter(client, SchemaRegistry(client), series_length=3, history=100)
    stream = f"s{uuid.uuid4().hex[:6]}"
    writer.apply([update(stream, "g", start * 1000, 1, start) for start in range(1000)])
    length = client.xlen(LIVE_CHANNEL)
    assert 100 <= length < 300, length  # "about": trimmed a whole node at a time


SINK_CATALOG = """
[streams.sinktest]
key = "user_id"
time_field = "ts"
"""


@pytest.fixture(scope="module")
def sink_setup(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A broker, a Redis database and a chdb of its own, so the shared pipeline (whose sinks
    subscribe to every ``clean.*`` topic) never sees these records."""
    data_dir = tmp_path_factory.mktemp("sink-engines")
    kafka = start_kafka(data_dir)
    redis_url = engines.redis.url.rsplit("/", 1)[0] + "/1"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    schemas_dir = tmp_path_factory.mktemp("sink-schemas")
    (schemas_dir / "streams.toml").write_text(SINK_CATALOG)
    shutil.copy(BUNDLED_DIR / "pageviews.avsc", schemas_dir / "sinktest.avsc")
    settings = Settings(kafka_bootstrap=kafka.url, redis_url=redis_url, schemas_dir=schemas_dir)
    registry = SchemaRegistry(client)
    catalog = StreamCatalog(client, registry)
    catalog.bootstrap(load_catalog(schemas_dir))
    ensure_topics(settings, pipeline_topics(catalog.specs()))
    engine = ChdbEngine(Path(tmp_path_factory.mktemp("chdb")))
    producer = Producer({"bootstrap.servers": kafka.url})
    writer = ClickHouseWriter(
        engine, "sinkdb", registry, catalog, DeadLetters(producer, registry, catalog)
    )
    writer.ensure_tables()
    yield {
        "kafka": kafka.url,
        "settings": settings,
        "catalog": catalog,
        "registry": registry,
        "engine": engine,
        "writer": writer,
        "producer": producer,
    }
    engine.close()
    kafka.stop()


def produce_and_consume(bootstrap: str, topic: str, values: list[bytes]) -> list[Message]:
    producer = Producer({"bootstrap.servers": bootstrap})
    marker = uuid.uuid4().hex.encode()
    for value in values:
        producer.produce(topic, value, marker)
    assert producer.flush(10) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    got: list[Message] = []

    def all_read() -> bool:
        got.extend(m for m in consumer.consume(100, 0.5) if m.error() is None and m.key() == marker)
        return len(got) == len(values)

    try:
        wait_until(all_read, 30, interval=0, message="test records to be consumable")
    finally:
        consumer.close()
    return got


def clean_record(spec: StreamSpec, event_id: str, ts: int) -> dict:
    return {
        "user_id": "u1",
        "page": "/p",
        "referrer": None,
        "country": "DE",
        "load_ms": 1.5,
        "ts": ts,
        "event_id": event_id,
        "ingested_at": ts,
        "event_time": ts,
        "processed_at": ts,
    }


def test_clickhouse_sink_redelivery_creates_no_duplicate_rows(
    engines: Engines, sink_setup: dict
) -> None:
    spec = sink_setup["catalog"].get("sinktest")
    clean_id = sink_setup["catalog"].ids("sinktest").clean
    now = time.time_ns() // 1_000_000
    ids = [f"dup-{uuid.uuid4().hex}" for _ in range(25)]
    values = [
        codec.encode(sink_setup["registry"], clean_id, clean_record(spec, i, now)) for i in ids
    ]
    messages = produce_and_consume(sink_setup["kafka"], clean_topic("sinktest"), values)
    writer: ClickHouseWriter = sink_setup["writer"]
    writer.write(messages)
    writer.write(messages)  # what a crash between insert and offset commit leads to
    id_list = ", ".join(f"'{i}'" for i in ids)
    engine: ChdbEngine = sink_setup["engine"]
    raw = engine.query(f"SELECT count() FROM sinkdb.events_sinktest WHERE event_id IN ({id_list})")
    final = engine.query(
        f"SELECT count() FROM sinkdb.events_sinktest FINAL WHERE event_id IN ({id_list})"
    )
    assert int(raw.rows[0][0]) == 50  # both inserts landed...
    assert int(final.rows[0][0]) == 25  # ...and collapse to one row per event


def test_clickhouse_sink_sends_undecodable_records_to_the_dlq(
    engines: Engines, sink_setup: dict
) -> None:
    garbage = b"\x07not-avro-" + uuid.uuid4().hex.encode()
    messages = produce_and_consume(sink_setup["kafka"], clean_topic("sinktest"), [garbage])
    sink_setup["writer"].write(messages)
    registry = sink_setup["registry"]
    consumer = Consumer(
        {
            "bootstrap.servers": sink_setup["kafka"],
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([dlq_topic("sinktest")])
    letters: list[dict] = []

    def found() -> bool:
        for m in consumer.consume(100, 0.5):
            if m.error() is None:
                record = codec.decode(registry, m.value())[1]
                if record["original"] == garbage:
                    letters.append(record)
        return bool(letters)

    try:
        wait_until(found, 30, interval=0, message="the dead letter")
    finally:
        consumer.close()
    assert letters[0]["stage"] == "sink"
    assert letters[0]["event_id"] is None  # unreadable: no id to tell
    assert "magic byte" in letters[0]["error"]


def read_sink_dead_letters(bootstrap: str, registry: SchemaRegistry, event_ids: set[str]) -> dict:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([dlq_topic("sinktest")])
    letters: dict[str, dict] = {}

    def found() -> bool:
        for m in consumer.consume(100, 0.5):
            if m.error() is None:
                record = codec.decode(registry, m.value())[1]
                original = record["original"]
                if original[:1] == b"\x00":
                    event_id = codec.decode(registry, original)[1]["event_id"]
                    if event_id in event_ids:
                        letters[event_id] = record
        return set(letters) == event_ids

    try:
        wait_until(found, 30, interval=0, message=f"dead letters for {sorted(event_ids)}")
    finally:
        consumer.close()
    return letters


def test_clickhouse_sink_dead_letters_only_the_rows_clickhouse_refuses(
    engines: Engines, sink_setup: dict
) -> None:
    engine: ChdbEngine = sink_setup["engine"]
    engine.command(
        "ALTER TABLE sinkdb.events_sinktest ADD CONSTRAINT IF NOT EXISTS "
        "load_is_positive CHECK load_ms >= 0"
    )
    try:
        spec = sink_setup["catalog"].get("sinktest")
        clean_id = sink_setup["catalog"].ids("sinktest").clean
        now = time.time_ns() // 1_000_000
        ids = [f"poison-{uuid.uuid4().hex}" for _ in range(9)]
        records = [clean_record(spec, i, now) for i in ids]
        records[4]["load_ms"] = -1.0  # the one row ClickHouse will refuse
        values = [codec.encode(sink_setup["registry"], clean_id, r) for r in records]
        messages = produce_and_consume(sink_setup["kafka"], clean_topic("sinktest"), values)
        sink_setup["writer"].write(messages)
    finally:
        engine.command("ALTER TABLE sinkdb.events_sinktest DROP CONSTRAINT load_is_positive")
    id_list = ", ".join(f"'{i}'" for i in ids)
    stored = engine.query(
        f"SELECT event_id FROM sinkdb.events_sinktest FINAL WHERE event_id IN ({id_list})"
    )
    assert sorted(r[0] for r in stored.rows) == sorted(ids[:4] + ids[5:])
    letters = read_sink_dead_letters(sink_setup["kafka"], sink_setup["registry"], {ids[4]})
    assert letters[ids[4]]["stage"] == "sink"
    assert letters[ids[4]]["event_id"] == ids[4]  # found by the id its producer was given
    assert "load_is_positive" in letters[ids[4]]["error"]


def test_query_parameters_carry_hostile_text_and_arrays_as_values(sink_setup: dict) -> None:
    engine: ChdbEngine = sink_setup["engine"]
    ids = ["' OR 1=1 --", "a\\b", "x\\'y", "plain", ""]
    result = engine.query(
        "SELECT {ids:Array(String)} AS ids, {one:String} AS one, {n:Int64} AS n",
        None,
        {"ids": ids, "one": "'); DROP TABLE x; --", "n": -(2**63)},
    )
    assert result.rows == [[ids, "'); DROP TABLE x; --", -(2**63)]]


def test_clickhouse_ranks_finals_by_their_events_and_shows_the_flows_version(
    sink_setup: dict,
) -> None:
    """Running values give way to newer ones and to a final; a later final gives way to the
    first if it counts fewer events (computed again from part of them) and replaces it if it
    counts more (amended by an event that was not late)."""
    registry: SchemaRegistry = sink_setup["registry"]
    metrics_id = sink_setup["catalog"].metrics_id
    stream = f"s{uuid.uuid4().hex[:6]}"
    rows = [
        update(stream, "g", 0, 3, 6),
        {**update(stream, "g", 0, 5, 10), "final": True},
        update(stream, "g", 0, 9, 3),
        {**update(stream, "g", 0, 10, 4), "final": True},
        update(stream, "g", 60_000, 7, 2),
        update(stream, "g", 60_000, 8, 5),
        {**update(stream, "g", 120_000, 5, 10), "final": True},
        {**update(stream, "g", 120_000, 12, 11), "final": True},
    ]
    values = [codec.encode(registry, metrics_id, row) for row in rows]
    messages = produce_and_consume(sink_setup["kafka"], METRICS_TOPIC, values)
    writer: ClickHouseWriter = sink_setup["writer"]
    for message in messages:  # one batch each, in order, as a sink meets them over time
        writer.write([message])
    engine: ChdbEngine = sink_setup["engine"]
    kept = engine.query(
        f"SELECT toUnixTimestamp64Milli(window_start), count, final, {SHOWN_VERSION_SQL} "
        f"FROM sinkdb.metrics FINAL WHERE stream = '{stream}' ORDER BY window_start"
    )
    assert [tuple(r) for r in kept.rows] == [
        (0, 10, True, 5),
        (60_000, 5, False, 8),
        (120_000, 11, True, 12),
    ]


def test_clickhouse_retraction_hides_a_final_session(sink_setup: dict) -> None:
    registry: SchemaRegistry = sink_setup["registry"]
    results_id = sink_setup["catalog"].results_id
    metric = f"m{uuid.uuid4().hex[:6]}"
    base = {
        "metric": metric,
        "generation": "g1",
        "stream": "s",
        "group_key": "*",
        "group": {},
        "window_start": 5000,
        "window_end": 6000,
        "values": {},
        "final": True,
    }
    rows = [
        {**base, "count": 2, "deleted": False, "version": 1},
        {**base, "count": 0, "deleted": True, "version": 2},
    ]
    values = [codec.encode(registry, results_id, row) for row in rows]
    writer: ClickHouseWriter = sink_setup["writer"]
    for message in produce_and_consume(sink_setup["kafka"], METRIC_RESULTS_TOPIC, values):
        writer.write([message])
    engine: ChdbEngine = sink_setup["engine"]
    kept = engine.query(
        f"SELECT count() FROM sinkdb.metric_results FINAL WHERE metric = '{metric}'"
    )
    assert int(kept.rows[0][0]) == 0
    stored = engine.query(f"SELECT count() FROM sinkdb.metric_results WHERE metric = '{metric}'")
    assert int(stored.rows[0][0]) == 2  # both were written: FINAL hid the window


def test_a_window_table_from_before_flow_version_shows_its_old_rows_versions(
    sink_setup: dict,
) -> None:
    """Tables created before ``flow_version`` get it added, and their old rows (a final stored
    as ``2^62 - version``) read their own version from it."""
    engine: ChdbEngine = sink_setup["engine"]
    engine.command("CREATE DATABASE IF NOT EXISTS legacy")
    legacy = create_metrics_table("legacy").replace(",\n  `flow_version` Int64", "")
    assert "flow_version" not in legacy
    engine.command(legacy)
    engine.insert_json_rows(
        "legacy",
        "metrics",
        [
            {**update("s", "g", 0, 0, 4), "final": True, "version": (1 << 62) - 77},
            update("s", "g", 1000, 88, 2),
        ],
    )
    engine.command(window_flow_version("legacy", "metrics"))
    kept = engine.query(
        f"SELECT count, {SHOWN_VERSION_SQL} FROM legacy.metrics FINAL ORDER BY window_start"
    )
    assert [tuple(r) for r in kept.rows] == [(4, 77), (2, 88)]
