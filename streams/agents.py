"""The Faust agents: decode, enrich, deduplicate and route every event of every stream.

Each agent takes events in batches (``take_events``): per-event awaits are what hold stock Faust
to a few thousand events per second. A batch's outputs go out through one confluent-kafka
producer and are awaited before Faust may commit the batch's offsets, so an event is either in
``clean.*``/``dlq.*`` or will be redelivered.

Deduplication lives in Redis with a TTL (the horizon). The key stores the Kafka position of the
first copy, so a *redelivery* of that very record after a crash is processed again instead of
being mistaken for a duplicate and lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
import redis.asyncio as aioredis

from riverbed.kafka import AsyncProducer, OutgoingRecord
from schemas import codec
from schemas.catalog import StreamSpec, clean_topic, dlq_topic, events_topic
from schemas.codec import CatalogIds
from schemas.registry import SchemaNotFound, SchemaRegistry
from schemas.wire import WireFormatError
from streams.processing import (
    EventRejected,
    ProcessingRules,
    dedup_key,
    enrich,
    source_position,
)

log = logging.getLogger(__name__)

# 1: process (first copy, or a redelivery of the first copy); 0: duplicate.
_DEDUP = """
local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
if ok then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


def stats_key(stream: str) -> str:
    return f"riverbed:stats:{stream}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class AgentContext:
    """Everything an agent needs, built once per worker and passed in."""

    registry: SchemaRegistry
    ids: CatalogIds
    redis: aioredis.Redis
    producer: AsyncProducer
    rules: ProcessingRules
    dedup_horizon_seconds: int

    def __post_init__(self) -> None:
        self._dedup = self.redis.register_script(_DEDUP)

    def dead_letter(
        self, spec: StreamSpec, raw: bytes, key: bytes | None, error: str, event_id: str | None
    ) -> OutgoingRecord:
        datum = {
            "stream": spec.name,
            "stage": "process",
            "error": error,
            "original": raw,
            "event_id": event_id,
            "failed_at": now_ms(),
        }
        value = codec.encode(self.registry, self.ids.streams[spec.name].dead_letter, datum)
        return OutgoingRecord(dlq_topic(spec.name), key, value)

    async def process_batch(self, spec: StreamSpec, events: Sequence[faust.EventT]) -> None:
        clean_id = self.ids.streams[spec.name].clean
        outgoing: list[OutgoingRecord] = []
        candidates: list[tuple[Any, dict[str, Any]]] = []
        stamp = now_ms()
        for event in events:
            raw = event.message.value or b""
            try:
                _, record = codec.decode(self.registry, raw)
                candidates.append((event, enrich(spec, record, stamp, self.rules)))
            except (WireFormatError, SchemaNotFound, EventRejected, KeyError) as exc:
                event_id = None
                log.warning("dead letter on %s: %s", spec.name, exc)
                outgoing.append(self.dead_letter(spec, raw, event.message.key, str(exc), event_id))
        verdicts = await self._first_copies(spec, candidates)
        duplicates = 0
        for (event, record), first in zip(candidates, verdicts, strict=True):
            if not first:
                duplicates += 1
                continue
            value = codec.encode(self.registry, clean_id, record)
            outgoing.append(OutgoingRecord(clean_topic(spec.name), event.message.key, value))
        errors = await self.producer.produce(outgoing)
        failed = [e for e in errors if e]
        if failed:
            # Raising stops the agent before Faust commits: the whole batch is redelivered.
            raise RuntimeError(
                f"{len(failed)} outputs of {spec.name} not acknowledged: {failed[0]}"
            )
        await self._count(
            spec, len(events), duplicates, len(outgoing) - len(candidates) + duplicates
        )

    async def _first_copies(
        self, spec: StreamSpec, candidates: list[tuple[Any, dict]]
    ) -> list[int]:
        if not candidates:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for event, record in candidates:
                message = event.message
                position = source_position(message.topic, message.partition, message.offset)
                await self._dedup(
                    keys=[dedup_key(spec.name, record["event_id"])],
                    args=[position, self.dedup_horizon_seconds],
                    client=pipe,
                )
            return [int(v) for v in await pipe.execute()]

    async def _count(self, spec: StreamSpec, seen: int, duplicates: int, dead: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(stats_key(spec.name), "processed", seen)
            if duplicates:
                pipe.hincrby(stats_key(spec.name), "duplicates", duplicates)
            if dead:
                pipe.hincrby(stats_key(spec.name), "dead_letters", dead)
            await pipe.execute()


def install_agents(
    app: faust.App,
    catalog: dict[str, StreamSpec],
    context: AgentContext,
    batch_size: int = 2000,
    within: float = 0.05,
) -> None:
    """One agent per stream, consuming ``events.{stream}`` as raw bytes."""
    for spec in catalog.values():
        topic = app.topic(events_topic(spec.name), key_serializer="raw", value_serializer="raw")

        async def process(stream: faust.StreamT, spec: StreamSpec = spec) -> None:
            async for events in stream.take_events(batch_size, within=within):  # type: ignore[attr-defined]
                await context.process_batch(spec, events)

        app.agent(topic, name=f"riverbed.process.{spec.name}")(process)
