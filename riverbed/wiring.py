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

from riverbed.kafka import ensure_topics, stream_topic_configs
from riverbed.settings import Settings
from schemas.catalog import load_catalog, load_reference_tables
from schemas.reference import REFERENCE_TOPIC_CONFIG
from schemas.registry import SchemaRegistry
from schemas.schema_log import KafkaSchemaLog, reconcile
from schemas.stream_catalog import VERSION_KEY, StreamCatalog

log = logging.getLogger(__name__)


class CatalogUnavailable(RuntimeError):
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
    while not client.exists(VERSION_KEY):
        if time.monotonic() > deadline:
            raise CatalogUnavailable(
                f"no stream catalog in Redis after {timeout:.0f}s; the api process creates it"
            )
        time.sleep(0.2)
    registry = SchemaRegistry(client)
    catalog = StreamCatalog(client, registry)
    catalog.refresh(force=True)
    return registry, catalog
