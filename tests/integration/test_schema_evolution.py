"""Any sequence of schema evolutions leaves the registry, the catalog, the agents and ClickHouse
agreeing on one shape of the stream.

A property test over real engines: valkey holds the registry and the catalog, chdb the table.
Each example evolves a fresh stream through generated steps (add a field of some type, drop
one, go back to an earlier shape) the way ``PUT /v1/streams/{s}/schema`` does, and after every
step, accepted or refused, checks that

- the registry's latest version of ``events.{s}-value`` and ``clean.{s}-value`` is the schema the
  catalog holds and writes with (the evolve-back bug: they used to differ);
- a record written with *every* version ever registered decodes, the way the agents read it, to
  exactly the latest fields;
- the ClickHouse table has a column of the latest type for every latest field, and takes the
  row the sink makes of each such record, reading back the value that was written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.streams_admin import evolve_stream
from riverbed.core.clickhouse import ChdbEngine, quote
from riverbed.core.errors import RiverbedError
from riverbed.core.topology import clean_topic, events_table, events_topic
from schemas import codec
from schemas.catalog import StreamSpec
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog, user_schema
from sinks.ddl import columns_for, row_converter
from sinks.tables import sync_stream_table
from streams.processing import ProcessingRules, enrich
from tests.conftest import Engines

pytestmark = pytest.mark.integration

DATABASE = "evolution"
NAMES = ("a", "b", "c")
TYPES = ("int", "long", "float", "double", "string", "boolean")
SAMPLES: dict[str, Any] = {
    "int": 7,
    "long": 2**40 + 3,  # beyond 32 bits: a column left as Int32 would not hold it
    "float": 1.5,
    "double": 2.25,
    "string": "text",
    "boolean": True,
}
DEFAULTS: dict[str, Any] = {
    "int": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "string": "",
    "boolean": False,
}
RULES = ProcessingRules(max_future_skew_ms=300_000)


@pytest.fixture(scope="module")
def world(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    client = redis.Redis.from_url(engines.redis.url.rsplit("/", 1)[0] + "/9")
    client.flushdb()
    registry = SchemaRegistry(client)
    engine = ChdbEngine(Path(tmp_path_factory.mktemp("evolution-chdb")))
    engine.command(f"CREATE DATABASE IF NOT EXISTS {quote(DATABASE)}")
    yield {"catalog": StreamCatalog(client, registry), "registry": registry, "engine": engine}
    engine.close()


def schema_of(fields: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Thing",
        "fields": [
            {"name": "id", "type": "string"},
            *({"name": n, "type": t, "default": DEFAULTS[t]} for n, t in fields),
        ],
    }


steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(NAMES), st.sampled_from(TYPES)),
        st.tuples(st.just("drop"), st.sampled_from(NAMES)),
        st.tuples(st.just("back"), st.integers(min_value=0, max_value=10)),
    ),
    min_size=1,
    max_size=6,
)


def next_fields(
    current: list[tuple[str, str]], history: list[list[tuple[str, str]]], step: tuple
) -> list[tuple[str, str]]:
    if step[0] == "add":
        return [*(f for f in current if f[0] != step[1]), (step[1], step[2])]
    if step[0] == "drop":
        return [f for f in current if f[0] != step[1]]
    return history[step[1] % len(history)]


def check_agreement(world: dict[str, Any], name: str) -> None:
    catalog: StreamCatalog = world["catalog"]
    registry: SchemaRegistry = world["registry"]
    engine: ChdbEngine = world["engine"]
    spec = catalog.get(name)
    ids = catalog.ids(name)

    latest_events = registry.version(codec.subject(events_topic(name)), "latest")
    latest_clean = registry.version(codec.subject(clean_topic(name)), "latest")
    assert latest_events.id == ids.ingest, "registry's latest is not what the stream writes"
    assert latest_clean.id == ids.clean
    assert user_schema(latest_events.schema, spec.schema["name"]) == spec.schema

    latest_types = {f["name"]: f["type"] for f in spec.schema["fields"]}
    table = events_table(name)
    described = engine.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": DATABASE, "t": table},
    ).records()
    columns = {row["name"]: row["type"] for row in described}
    for column in columns_for(registry.schema(ids.clean)):
        assert columns.get(column.name) == column.type, f"column {column.name}"

    for writer_id in registry.subject_ids(codec.subject(events_topic(name))):
        writer = registry.schema(writer_id)
        written = {f["name"]: SAMPLES[f["type"]] for f in writer["fields"] if f["name"] in NAMES}
        event_id = uuid.uuid4().hex
        datum = {"id": "k", "event_id": event_id, "ingested_at": 1_700_000_000_000, **written}
        raw = codec.encode(registry, writer_id, datum)
        # The agents: resolve to the stream's latest ingest schema, enrich, write clean.
        reader = catalog.reader_ids(name, writer_id)
        _, record = codec.decode(registry, raw, reader_id=reader.ingest)
        assert set(record) - {"event_id", "ingested_at"} == set(latest_types)
        clean = codec.encode(registry, reader.clean, enrich(spec, record, 1_700_000_000_000, RULES))
        # The ClickHouse sink: decode with the table's clean schema, convert, insert.
        _, clean_record = codec.decode(registry, clean, reader_id=ids.clean)
        row = row_converter(registry.schema(ids.clean))(clean_record)
        engine.insert_json_rows(DATABASE, table, [row])
        stored = engine.query(
            f"SELECT * FROM {quote(DATABASE)}.{quote(table)} WHERE event_id = {{e:String}}",
            parameters={"e": event_id},
        ).records()
        assert len(stored) == 1
        for field, avro_type in latest_types.items():
            if field == "id":
                continue
            expected = written.get(field, DEFAULTS[avro_type])
            assert_stored(stored[0][field], expected, avro_type, field)


def assert_stored(value: Any, expected: Any, avro_type: str, field: str) -> None:
    if avro_type == "boolean":
        assert bool(value) == expected, field
    elif avro_type == "string":
        assert value == str(expected), field
    elif avro_type in ("int", "long"):
        assert int(value) == expected, field
    else:
        assert float(value) == pytest.approx(float(expected)), field


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=steps)
@example(plan=[("add", "a", "int"), ("add", "a", "long")])
@example(plan=[("add", "a", "int"), ("drop", "a"), ("add", "a", "double"), ("back", 1)])
def test_registry_catalog_agents_and_clickhouse_agree_after_any_evolutions(
    world: dict[str, Any], plan: list[tuple]
) -> None:
    catalog: StreamCatalog = world["catalog"]
    name = f"e{uuid.uuid4().hex[:8]}"
    current: list[tuple[str, str]] = []
    catalog.create(
        StreamSpec(name=name, schema=schema_of(current), key_field="id", field_names=("id",))
    )
    sync_stream_table(
        world["engine"], DATABASE, name, world["registry"].schema(catalog.ids(name).clean)
    )
    history = [current]
    check_agreement(world, name)
    for step in plan:
        wanted = next_fields(current, history, step)
        before = catalog.ids(name)
        try:
            evolve_stream(catalog, world["engine"], DATABASE, name, schema_of(wanted))
        except RiverbedError:  # refused (incompatible): nothing may have changed
            assert catalog.ids(name) == before
        else:
            current = wanted
            history.append(current)
        check_agreement(world, name)


EVERY_TYPE = [
    {"name": "id", "type": "string"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "by", "type": "bytes"},
    {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
    {"name": "oe", "type": ["null", "Color"], "default": None},
    {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "dt", "type": {"type": "int", "logicalType": "date"}},
    {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
    {
        "name": "dec",
        "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
    },
    {"name": "opt", "type": ["null", "long"], "default": None},
    {"name": "arr", "type": {"type": "array", "items": ["null", "int"]}},
    {"name": "m", "type": {"type": "map", "values": "double"}},
    {
        "name": "rec",
        "type": {"type": "record", "name": "P", "fields": [{"name": "x", "type": "int"}]},
    },
    {"name": "many", "type": ["null", "int", "string"], "default": None},
]


def test_a_table_in_step_with_its_schema_is_left_alone(world: dict[str, Any]) -> None:
    """ClickHouse spells every mapped type the way the mapping does, so a second sync finds
    nothing to change (a difference would widen the column again on every new schema id)."""
    catalog: StreamCatalog = world["catalog"]
    name = f"t{uuid.uuid4().hex[:8]}"
    schema = {"type": "record", "name": "Every", "fields": EVERY_TYPE}
    catalog.create(StreamSpec(name=name, schema=schema, key_field="id", field_names=("id",)))
    clean = world["registry"].schema(catalog.ids(name).clean)
    assert sync_stream_table(world["engine"], DATABASE, name, clean)  # created
    assert sync_stream_table(world["engine"], DATABASE, name, clean) == []
