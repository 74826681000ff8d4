"""The embedded engines a stage benchmark runs against, with the catalog and topics in place.

Unlike ``bench.pipeline`` no Riverbed process is started here: the benchmark fills the stage's
input topic itself, then starts only the process it measures.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from riverbed.core.kafka import ensure_topics
from riverbed.core.settings import Settings
from riverbed.embedded import start_kafka, start_redis
from schemas.bootstrap import catalog_topics
from schemas.catalog import load_catalog
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog


@dataclass(frozen=True)
class BenchStack:
    settings: Settings
    env: dict[str, str]  # for child processes (``Supervisor``), pointing at these engines
    data_dir: Path
    registry: SchemaRegistry
    catalog: StreamCatalog


@contextmanager
def bench_stack(prefix: str, extra_topics: list[str]) -> Iterator[BenchStack]:
    """tansu and valkey in a temp dir, the bundled streams declared, the pipeline's topics and
    ``extra_topics`` created; everything is stopped and removed on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        data_dir = Path(tmp)
        kafka, valkey = start_kafka(data_dir), start_redis(data_dir)
        env = {
            "KAFKA_BOOTSTRAP": kafka.url,
            "REDIS_URL": valkey.url,
            "RIVERBED_DATA_DIR": str(data_dir),
        }
        try:
            settings = Settings(kafka_bootstrap=kafka.url, redis_url=valkey.url, data_dir=data_dir)
            client = redis.Redis.from_url(valkey.url)
            registry = SchemaRegistry(client)
            catalog = StreamCatalog(client, registry)
            catalog.bootstrap(load_catalog(settings.schemas_dir))
            topics = catalog_topics(settings, catalog)
            ensure_topics(settings, [*topics["topics"], *extra_topics], configs=topics["configs"])
            yield BenchStack(settings, env, data_dir, registry, catalog)
        finally:
            valkey.stop()
            kafka.stop()
