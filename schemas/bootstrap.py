"""How a process gets its schema registry and stream catalog.

The API process *bootstraps*: it reconciles the registry with the ``_schemas`` log, declares the
streams of ``streams.toml`` and creates their topics. Every other process only *joins*: it waits
until a catalog exists and then follows it, so there is exactly one writer of the log at start-up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from riverbed.core.errors import Unavailable
from riverbed.core.kafka import ensure_topics
from riverbed.core.settings import Settings
from riverbed.core.topology import (
    AUDIT_TOPIC,
    METRIC_RESULTS_TOPIC,
    METRICS_TOPIC,
    STREAMS_VERSION_KEY,
    clean_topic,
    dlq_topic,
    events_topic,
    reference_topic,
)
from schemas.catalog import StreamSpec, load_catalog, load_reference_tables
from schemas.reference import REFERENCE_TOPIC_CONFIG
from schemas.registry import SchemaRegistry
from schemas.schema_log import KafkaSchemaLog, reconcile
from schemas.stream_catalog import StreamCatalog

log = logging.getLogger(__name__)


class CatalogUnavailable(Unavailable):
    """No process bootstrapped the catalog in time (is the API running?)."""


def bootstrap_catalog(settings: Settings) -> tuple[SchemaRegistry, StreamCatalog]:
    client = redis.Redis.from_url(settings.require_redis())
    schema_log = KafkaSchemaLog(settings.require_kafka())
    registry = SchemaRegistry(client, log=schema_log)
    log.info("schema registry: %s", reconcile(registry, schema_log))
    catalog = StreamCatalog(client, registry)
    catalog.bootstrap(load_catalog(settings.schemas_dir))
    ensure_topics(settings, **catalog_topics(settings, catalog))
    return registry, catalog


def catalog_topics(settings: Settings, catalog: StreamCatalog) -> dict[str, Any]:
    """``ensure_topics`` arguments for everything the catalog needs, reference tables too."""
    topics = stream_topic_configs(catalog.specs())
    # Every declared table, so that PUT /v1/reference can write one no stream enriches from yet.
    for table in load_reference_tables(settings.schemas_dir).values():
        topics["topics"].append(table.topic)
        topics["configs"][table.topic] = dict(REFERENCE_TOPIC_CONFIG)
    return topics


def join_catalog(
    settings: Settings, timeout: float = 180.0
) -> tuple[SchemaRegistry, StreamCatalog]:
    client = redis.Redis.from_url(settings.require_redis())
    deadline = time.monotonic() + timeout
    while not client.exists(STREAMS_VERSION_KEY):
        if time.monotonic() > deadline:
            raise CatalogUnavailable(
                f"no stream catalog in Redis after {timeout:.0f}s; the api process creates it"
            )
        time.sleep(0.2)
    registry = SchemaRegistry(client)
    catalog = StreamCatalog(client, registry)
    catalog.refresh(force=True)
    return registry, catalog


def pipeline_topics(catalog: dict[str, StreamSpec]) -> list[str]:
    names = [METRICS_TOPIC, METRIC_RESULTS_TOPIC, AUDIT_TOPIC]
    for stream in catalog:
        names += [events_topic(stream), clean_topic(stream), dlq_topic(stream)]
    return names


def stream_topic_configs(catalog: dict[str, StreamSpec]) -> dict[str, Any]:
    """``ensure_topics`` arguments for a catalog: every topic, with each stream's retention.

    Route targets are created with their stream's configs; reference tables are compacted.
    """
    topics = pipeline_topics(catalog)
    configs: dict[str, dict[str, str]] = {}
    for name, spec in catalog.items():
        topics += spec.route_topics
        for enrichment in spec.enrich:
            topics.append(reference_topic(enrichment.table))
            configs[reference_topic(enrichment.table)] = dict(REFERENCE_TOPIC_CONFIG)
        if spec.retention_ms is not None:
            own = (events_topic(name), clean_topic(name), dlq_topic(name), *spec.route_topics)
            for topic in own:
                configs[topic] = {"retention.ms": str(spec.retention_ms)}
    return {"topics": list(dict.fromkeys(topics)), "configs": configs}
