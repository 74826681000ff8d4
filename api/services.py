"""What the API process holds: clients built once at start-up and handed to the routes."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis import Redis as SyncRedis

from api.engine_relay import EngineRelay
from api.ingest.service import Ingestor
from api.live.hub import Hub
from api.stores.audit import AuditStore
from api.stores.dead_letters import DeadLetterStore
from api.stores.events import EventStore
from api.stores.live import LiveValues
from api.stores.metric_results import MetricResultStore
from riverbed.core.clickhouse import ClickHouse
from riverbed.core.kafka import AsyncProducer
from riverbed.core.settings import Settings
from schemas.catalog import StreamSpec
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from streams.metrics.store import MetricStore
from streams.reference_store import ReferenceStore


@dataclass
class Services:
    settings: Settings
    catalog: StreamCatalog
    registry: SchemaRegistry
    producer: AsyncProducer
    redis: aioredis.Redis
    sync_redis: SyncRedis
    clickhouse: ClickHouse
    metric_store: MetricStore
    ingestor: Ingestor
    events: EventStore
    dead_letters: DeadLetterStore
    metric_results: MetricResultStore
    live: LiveValues
    audit: AuditStore
    reference: ReferenceStore
    relay: EngineRelay  # streams exports of POST /v1/query from the engine
    hub: Hub  # the live logs, read once per process, fanned out to SSE clients
    # Problems of the metrics file's last sync ({path, message}); empty when it applied.
    metrics_file_errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def draining(self) -> bool:
        """Set by SIGUSR1 (riverbed up's graceful stop): ingest answers 503 while the rest
        drains."""
        return self.ingestor.draining

    def stream(self, name: str) -> StreamSpec:
        """The stream's spec; raises :class:`schemas.catalog.StreamNotFound` (-> 404)."""
        return self.catalog.get(name)
