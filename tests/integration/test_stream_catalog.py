"""The shared stream catalog against a real Redis: bootstrap, evolution, protection."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
import redis

from schemas.catalog import StreamNotFound, StreamSpec
from schemas.registry import SchemaRegistry
from schemas.registry_errors import SchemaIncompatible
from schemas.stream_catalog import (
    StreamCatalog,
    StreamClosing,
    StreamDeclaredInFile,
    StreamExists,
)
from tests.conftest import Engines, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture()
def catalog(engines: Engines) -> StreamCatalog:
    client = redis.Redis.from_url(engines.redis.url.rsplit("/", 1)[0] + "/7")
    client.flushdb()
    return StreamCatalog(client, SchemaRegistry(client))


def spec(name: str, *extra: dict) -> StreamSpec:
    fields = [{"name": "id", "type": "string"}, *extra]
    schema = {"type": "record", "name": "Thing", "fields": fields}
    return StreamSpec(
        name=name, schema=schema, key_field="id", field_names=tuple(f["name"] for f in fields)
    )


def test_a_restart_keeps_a_run_time_evolution_unless_the_file_changed(
    catalog: StreamCatalog,
) -> None:
    name = f"s{uuid.uuid4().hex[:6]}"
    declared = spec(name)
    catalog.bootstrap({name: declared})
    evolved = catalog.evolve(name, spec(name, {"name": "n", "type": "int", "default": 0}).schema)
    catalog.bootstrap({name: declared})  # the same streams.toml as before: a restart
    assert catalog.get(name).schema == evolved.schema
    changed = spec(name, {"name": "m", "type": "long", "default": 1})
    catalog.bootstrap({name: changed})  # the file itself changed: it wins (compatibly)
    assert catalog.get(name).schema == changed.schema


def test_streams_write_with_the_ids_stored_beside_them(catalog: StreamCatalog) -> None:
    name = f"s{uuid.uuid4().hex[:6]}"
    catalog.create(spec(name))
    first = catalog.ids(name)
    catalog.evolve(name, spec(name, {"name": "n", "type": "int", "default": 0}).schema)
    catalog.evolve(name, spec(name).schema)  # back to the first schema (already version 1)
    assert catalog.ids(name) == first


def test_a_stream_schema_must_read_every_earlier_version_whatever_the_level(
    catalog: StreamCatalog,
) -> None:
    name = f"s{uuid.uuid4().hex[:6]}"
    catalog.create(spec(name))
    catalog.registry.set_compatibility("NONE", f"events.{name}-value")
    with pytest.raises(SchemaIncompatible) as refused:
        catalog.evolve(name, spec(name, {"name": "required", "type": "int"}).schema)
    assert refused.value.level == "BACKWARD_TRANSITIVE"


def test_creating_a_stream_twice_is_refused(catalog: StreamCatalog) -> None:
    name = f"s{uuid.uuid4().hex[:6]}"
    catalog.create(spec(name))
    with pytest.raises(StreamExists):
        catalog.create(dataclasses.replace(spec(name), key_field="id"))


def test_a_following_catalog_sees_other_writers_and_reads_without_redis(
    catalog: StreamCatalog,
) -> None:
    name = f"s{uuid.uuid4().hex[:6]}"
    reader = StreamCatalog(catalog.redis, SchemaRegistry(catalog.redis))
    reader.follow(interval=0.1)
    try:
        catalog.create(spec(name))  # another process's write
        wait_until(lambda: name in reader.names(), 10, message="the follower to see the stream")
        # Reads come from the snapshot: with Redis unreachable they still answer at once.
        reader.redis = redis.Redis(port=1, socket_connect_timeout=0.2)
        assert reader.get(name).name == name
        with pytest.raises(StreamNotFound):
            reader.get(f"missing{uuid.uuid4().hex[:6]}")
    finally:
        reader.stop()


def test_a_closing_stream_refuses_intake_and_a_removed_one_starts_a_new_history(
    catalog: StreamCatalog,
) -> None:
    name = f"s{uuid.uuid4().hex[:6]}"
    catalog.create(spec(name, {"name": "n", "type": "int", "default": 0}))
    catalog.check_open(name)
    catalog.close(name)
    with pytest.raises(StreamClosing):
        catalog.check_open(name)
    assert catalog.get(name).name == name  # the agents still read what it holds
    subjects = catalog.remove(name)
    with pytest.raises(StreamNotFound):
        catalog.get(name)
    assert all(catalog.registry.versions(s) == [] for s in subjects)
    assert name in catalog.topic_streams()  # its topics stay, and the flow keeps reading them
    assert catalog.is_retired(name)
    # A new stream of that name owes nothing to the old one: n comes back as a string.
    catalog.create(spec(name, {"name": "n", "type": "string", "default": ""}))
    catalog.check_open(name)
    assert not catalog.is_retired(name)


def test_a_stream_of_streams_toml_is_not_deleted_over_http(catalog: StreamCatalog) -> None:
    name = f"s{uuid.uuid4().hex[:6]}"
    catalog.bootstrap({name: spec(name)})
    with pytest.raises(StreamDeclaredInFile):
        catalog.close(name)
