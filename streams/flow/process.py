"""``riverbed run flow``: the dataflow on Kafka, with its recovery store and its watchers."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta

import redis
from bytewax.recovery import RecoveryConfig, init_db_dir

from riverbed.core.heartbeat import start_heartbeat
from riverbed.core.lifecycle import EXIT_RESTART
from riverbed.core.settings import Settings
from schemas.bootstrap import join_catalog
from schemas.stream_catalog import StreamCatalog
from streams.flow.dataflow import kafka_flow
from streams.metrics.store import MetricFollower, MetricStore

log = logging.getLogger(__name__)


def recovery_config(settings: Settings) -> RecoveryConfig:
    """The store of snapshots; created (one partition per worker process) on first use."""
    directory = settings.flow_recovery_dir
    if not directory.exists() or not any(directory.iterdir()):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)
    return RecoveryConfig(directory)


def watch_for_new_streams(catalog: StreamCatalog, interval: float = 2.0) -> None:
    """The Kafka source's partitions are fixed at start, so a new stream needs a restart: exit
    with ``EXIT_RESTART`` (the recovery store carries the state across). A deleted stream needs
    none: its topics stay, and so does it among the flow's inputs (``topic_streams``), since
    Bytewax refuses to resume from snapshots of partitions it no longer reads."""
    known = set(catalog.topic_streams())

    def watch() -> None:
        while True:
            time.sleep(interval)
            added = set(catalog.topic_streams()) - known
            if added:
                log.warning("new streams %s: restarting the flow to read them", sorted(added))
                os._exit(EXIT_RESTART)

    threading.Thread(target=watch, name="catalog-watch", daemon=True).start()


def follow_metrics(follower: MetricFollower, interval: float = 1.0) -> None:
    """Pick up declared metrics while no events arrive too (the decode step refreshes only when
    it has a batch), so ``running`` turns true before the first event is posted."""

    def follow() -> None:
        while True:
            time.sleep(interval)
            try:
                follower.refresh()
            except redis.RedisError as exc:
                log.warning("cannot refresh declared metrics: %s", exc)

    threading.Thread(target=follow, name="metrics-follow", daemon=True).start()


def run(settings: Settings) -> None:
    from bytewax._bytewax import cli_main

    registry, catalog = join_catalog(settings)
    store = MetricStore(
        redis.Redis.from_url(settings.require_redis()),
        catalog.specs,
        settings.allowed_lateness_seconds * 1000,
    )
    follower = MetricFollower(store)
    follower.refresh(force=True)
    flow = kafka_flow(settings, registry, catalog, follower)
    start_heartbeat(settings.require_redis(), "flow")
    watch_for_new_streams(catalog)
    follow_metrics(follower)
    cli_main(
        flow,
        workers_per_process=settings.flow_workers,
        epoch_interval=timedelta(seconds=settings.flow_snapshot_seconds),
        recovery_config=recovery_config(settings),
    )
