"""What the API process holds: clients built once at start-up and handed to the routes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis import Redis as SyncRedis

from riverbed.kafka import AsyncProducer
from riverbed.settings import Settings
from schemas.catalog import StreamNotFound, StreamSpec
from schemas.codec import CatalogIds
from schemas.registry import SchemaRegistry
from sinks.clickhouse import ClickHouse
from sinks.runner import SinkRunner


@dataclass
class Services:
    settings: Settings
    catalog: dict[str, StreamSpec]
    registry: SchemaRegistry
    ids: CatalogIds
    producer: AsyncProducer
    redis: aioredis.Redis
    sync_redis: SyncRedis
    clickhouse: ClickHouse
    sinks: list[SinkRunner] = field(default_factory=list)
    sink_threads: list[threading.Thread] = field(default_factory=list)
    # Set by SIGUSR1 (riverbed up's graceful stop): ingest answers 503 while the rest drains.
    draining: bool = False

    def stream(self, name: str) -> StreamSpec:
        spec = self.catalog.get(name)
        if spec is None:
            raise StreamNotFound(name)
        return spec
