"""The ``_schemas`` log and Redis rebuild each other, keeping schema ids stable."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from riverbed.embedded import Engine, start_kafka
from schemas.registry import SchemaRegistry
from schemas.schema_log import KafkaSchemaLog, reconcile
from tests.conftest import Engines

pytestmark = pytest.mark.integration


@pytest.fixture()
def own_kafka(tmp_path: Path) -> Iterator[Engine]:
    kafka = start_kafka(tmp_path)  # a broker of its own: the log must start empty
    yield kafka
    kafka.stop()


@pytest.fixture()
def scratch_redis(engines: Engines) -> redis.Redis:
    client = redis.Redis.from_url(engines.redis.url.rsplit("/", 1)[0] + "/2")
    client.flushdb()
    return client


def thing(*extra: dict) -> dict:
    return {"type": "record", "name": "Thing", "fields": [{"name": "id", "type": "string"}, *extra]}


def test_an_emptied_redis_is_rebuilt_from_the_log_with_the_same_ids(
    own_kafka: Engine, scratch_redis: redis.Redis
) -> None:
    schema_log = KafkaSchemaLog(own_kafka.url)
    schema_log.ensure_topic()
    registry = SchemaRegistry(scratch_redis, log=schema_log)
    subject = f"log-{uuid.uuid4().hex[:6]}-value"
    first = registry.register(subject, thing())
    second = registry.register(subject, thing({"name": "n", "type": "int", "default": 0}))
    registry.set_compatibility("FULL", subject)
    registry.delete_version(subject, 1)

    scratch_redis.flushdb()
    rebuilt = SchemaRegistry(scratch_redis, log=schema_log)
    assert "restored" in reconcile(rebuilt, schema_log)
    assert rebuilt.versions(subject) == [2]
    assert rebuilt.version(subject, 2).id == second
    assert rebuilt.schema(first) == thing()  # soft-deleted, still resolvable
    assert rebuilt.compatibility(subject) == "FULL"
    # New registrations continue after the highest restored id, never reusing one.
    other = rebuilt.register(
        f"other-{uuid.uuid4().hex[:6]}-value", thing({"name": "x", "type": "long"})
    )
    assert other > second


def test_an_empty_log_is_reseeded_from_redis(own_kafka: Engine, scratch_redis: redis.Redis) -> None:
    registry = SchemaRegistry(scratch_redis)  # no log: as if the broker had been replaced
    subject = f"seed-{uuid.uuid4().hex[:6]}-value"
    schema_id = registry.register(subject, thing())
    schema_log = KafkaSchemaLog(own_kafka.url)
    assert "re-seeded" in reconcile(registry, schema_log)
    records = schema_log.read_all()
    values = [value for key, value in records if key["keytype"] == "SCHEMA"]
    assert [(v["subject"], v["version"], v["id"]) for v in values] == [(subject, 1, schema_id)]
    assert json.loads(values[0]["schema"]) == thing()
