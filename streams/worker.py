"""Build and run the Faust worker process (``riverbed run agents``)."""

from __future__ import annotations

import logging
from typing import Any

import faust
import redis.asyncio as aioredis

from riverbed.core.heartbeat import start_heartbeat
from riverbed.core.kafka import AsyncProducer, producer_config
from riverbed.core.settings import Settings
from riverbed.core.topology import AGENTS_GROUP
from schemas.bootstrap import join_catalog
from streams.agents import AgentContext, install_agents, reference_tables
from streams.fast_fetch import FastFetchApp
from streams.processing import ProcessingRules
from streams.reference_store import ReferenceStore
from streams.tail import TailSampler

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    return FastFetchApp(
        AGENTS_GROUP,
        broker=f"kafka://{settings.require_kafka()}",
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,  # topics are created by `riverbed` with the right partitions
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.5, settings.kafka_session_timeout_ms / 6000),
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        broker_max_poll_records=5000,
        stream_buffer_maxsize=20000,
        web_enabled=False,
        # One directory per replica: Faust keeps per-worker files there.
        datadir=str(
            settings.data_dir / ("faust" if not settings.instance else f"faust-{settings.instance}")
        ),
        producer_acks=-1,
    )


def build_worker(settings: Settings) -> faust.App:
    registry, catalog = join_catalog(settings)
    app = create_app(settings)
    # Loaded before the agents start, so no event is enriched from a half-read table.
    references = ReferenceStore(settings.require_kafka(), reference_tables(catalog.specs()))
    references.start()
    references.wait_ready(timeout=120)
    context = AgentContext(
        registry=registry,
        catalog=catalog,
        redis=aioredis.Redis.from_url(settings.require_redis()),
        producer=AsyncProducer(producer_config(settings)),
        rules=ProcessingRules(max_future_skew_ms=settings.max_future_skew_seconds * 1000),
        dedup_horizon_seconds=settings.dedup_horizon_seconds,
        references=references,
        instance=settings.instance,
        tail=TailSampler(settings.live_tail_events_per_second),
        live_history=settings.live_history_length,
    )
    install_agents(app, context)
    return app


def run(settings: Settings, **worker_options: Any) -> None:
    app = build_worker(settings)
    start_heartbeat(settings.require_redis(), "agents")
    worker = faust.Worker(app, loglevel="WARN", **worker_options)
    worker.execute_from_commandline()
