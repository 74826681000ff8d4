"""The Faust agents: decode, enrich, deduplicate and route every event of every stream.

Each agent takes events in batches (``take_events``): per-event awaits are what hold stock Faust
to a few thousand events per second. A batch's outputs go out through one confluent-kafka
producer and are awaited before Faust may commit the batch's offsets, so an event is either in
``clean.*``/``dlq.*`` or will be redelivered.

Deduplication lives in Redis with a TTL (the horizon). The key stores the Kafka position of the
first copy, so a *redelivery* of that very record after a crash is processed again instead of
being mistaken for a duplicate and lost.

Enrichment adds the declared attributes of reference tables (``ref.*``, followed in memory by
:class:`streams.reference_store.ReferenceStore`); routing rules then copy each first copy whose
filter matches to the rule's topic, in the same batch as its ``clean.*`` record, so both are
acknowledged before the offsets may be committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
import mode
import redis.asyncio as aioredis

from riverbed.core.errors import RiverbedError
from riverbed.core.first_copies import FirstCopies, source_position
from riverbed.core.kafka import AsyncProducer, OutgoingRecord
from riverbed.core.lifecycle import EXIT_RESTART
from riverbed.core.live_log import append
from riverbed.core.topology import TAIL_CHANNEL, clean_topic, dlq_topic, events_topic, stats_key
from schemas import codec
from schemas.catalog import StreamNotFound, StreamSpec
from schemas.registry import SchemaRegistry
from schemas.routes import compile_routes, matching_topics
from schemas.stream_catalog import StreamCatalog
from schemas.system import dead_letter
from streams.processing import (
    NOT_PROCESSABLE,
    ProcessingRules,
    add_reference_attributes,
    decode_and_enrich,
    no_references,
)
from streams.reference_store import ReferenceStore
from streams.tail import TailSampler

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class OutputNotAcknowledged(RiverbedError):
    """The broker did not acknowledge an agent's output; the batch must be re-read."""


@dataclass
class RoutedBatch:
    events: Sequence[Any]
    outgoing: list[OutgoingRecord] = field(default_factory=list)
    duplicates: int = 0
    dead_letters: int = 0
    routed: int = 0
    tail: list[dict[str, Any]] = field(default_factory=list)  # a sample for the live tail


@dataclass
class AgentContext:
    """Everything an agent needs, built once per worker and passed in."""

    registry: SchemaRegistry
    catalog: StreamCatalog
    redis: aioredis.Redis
    producer: AsyncProducer
    rules: ProcessingRules
    dedup_horizon_seconds: int
    references: ReferenceStore | None = None
    instance: int = 0  # which replica of the agents this worker is (RIVERBED_INSTANCE)
    tail: TailSampler | None = None
    live_history: int = 50_000

    def __post_init__(self) -> None:
        self._copies = FirstCopies(self.redis, self.dedup_horizon_seconds)
        self._lookup = self.references.lookup if self.references else no_references

    @property
    def reference_tables(self) -> frozenset[str]:
        """Tables this worker follows; enriching from another needs a restart."""
        return self.references.tables if self.references else frozenset()

    def dead_letter(
        self, spec: StreamSpec, raw: bytes, key: bytes | None, error: str, event_id: str | None
    ) -> OutgoingRecord:
        datum = dead_letter(spec.name, "process", error, raw, event_id)
        value = codec.encode(self.registry, self.catalog.ids(spec.name).dead_letter, datum)
        return OutgoingRecord(dlq_topic(spec.name), key, value)

    async def route_batch(self, spec: StreamSpec, events: Sequence[faust.EventT]) -> RoutedBatch:
        """Decode, enrich and deduplicate a batch into the records it must produce."""
        routed = RoutedBatch(events)
        candidates: list[tuple[Any, dict[str, Any]]] = []
        clean_ids: list[int] = []
        stamp = now_ms()
        for event in events:
            raw = event.message.value or b""
            try:
                decoded = decode_and_enrich(
                    self.registry, self.catalog, spec.name, raw, stamp, self.rules
                )
                spec = decoded.spec
                record = add_reference_attributes(spec, decoded.record, self._lookup)
                candidates.append((event, record))
                clean_ids.append(decoded.clean_id)
            except NOT_PROCESSABLE as exc:
                log.warning("dead letter on %s: %s", spec.name, exc)
                event_id = codec.event_id_of(self.registry, raw)
                routed.outgoing.append(
                    self.dead_letter(spec, raw, event.message.key, str(exc), event_id)
                )
                routed.dead_letters += 1
        verdicts = await self._first_copies(spec, candidates)
        routes = compile_routes(spec.routes, tuple(f["name"] for f in spec.clean_schema["fields"]))
        clean: list[dict[str, Any]] = []
        for (event, record), clean_id, first in zip(candidates, clean_ids, verdicts, strict=True):
            if not first:
                routed.duplicates += 1
                continue
            clean.append(record)
            value = codec.encode(self.registry, clean_id, record)
            key = event.message.key
            routed.outgoing.append(OutgoingRecord(clean_topic(spec.name), key, value))
            for topic in matching_topics(routes, record):
                routed.outgoing.append(OutgoingRecord(topic, key, value))
                routed.routed += 1
        if self.tail is not None:
            routed.tail = self.tail.take(spec.name, clean, time.monotonic())
        return routed

    async def deliver(self, spec: StreamSpec, routed: RoutedBatch) -> None:
        """Await the broker's acks for a routed batch, then release its offsets for commit.

        Raises if any output was not acknowledged; the offsets then stay uncommitted and the
        worker (which crashes with the agent) re-reads the batch after its restart.
        """
        errors = await self.producer.produce(routed.outgoing)
        failed = [e for e in errors if e]
        if failed:
            raise OutputNotAcknowledged(
                f"{len(failed)} outputs of {spec.name} not acknowledged: {failed[0]}"
            )
        await self._count(
            spec,
            len(routed.events),
            routed.duplicates,
            routed.dead_letters,
            routed.routed,
            routed.tail,
        )
        for event in routed.events:
            event.ack()

    async def _first_copies(
        self, spec: StreamSpec, candidates: list[tuple[Any, dict]]
    ) -> list[int]:
        if not candidates:
            return []
        verdicts = await self._copies.claim(
            spec.name,
            [
                (
                    record["event_id"],
                    source_position(e.message.topic, e.message.partition, e.message.offset),
                )
                for e, record in candidates
            ],
        )
        return [int(v) for v in verdicts]

    async def _count(
        self,
        spec: StreamSpec,
        seen: int,
        duplicates: int,
        dead: int,
        routed: int = 0,
        tail: Sequence[dict[str, Any]] = (),
    ) -> None:
        """The stream's counters, and its sample for the live tail: both after the broker
        acknowledged the batch, so the tail shows processed events only (a batch re-read
        after a crash may show some twice there)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for record in tail:
                message = {"stream": spec.name, "event": record}
                append(pipe, TAIL_CHANNEL, message, self.live_history)
            pipe.hincrby(stats_key(spec.name), "processed", seen)
            # Per replica too, so scaling out can be seen (and tested) to share the work.
            pipe.hincrby(stats_key(spec.name), f"processed:{self.instance}", seen)
            if duplicates:
                pipe.hincrby(stats_key(spec.name), "duplicates", duplicates)
            if dead:
                pipe.hincrby(stats_key(spec.name), "dead_letters", dead)
            if routed:
                pipe.hincrby(stats_key(spec.name), "routed", routed)
            await pipe.execute()


def install_agents(
    app: faust.App,
    context: AgentContext,
    batch_size: int = 5000,
    within: float = 0.02,
    max_in_flight: int = 4,
) -> None:
    """One agent per stream, consuming ``events.{stream}`` as raw bytes.

    Batches are pipelined: while the broker acknowledges batch N, batch N+1 is routed. Each
    message holds an extra Faust reference until its batch's outputs are acknowledged, so
    ``take_events``' own ack cannot let Faust commit past output still in flight (Faust
    commits only contiguous acked offsets). Outputs are produced in batch order, so per-key
    order is kept. A failed batch crashes the agent, and with it the worker
    (``CrashingSupervisor``), so the supervisor restarts it from the committed offsets.

    Faust cannot add agents to a running worker (and its pattern subscriptions are unreliable),
    so a timer watches the catalog and exits with ``EXIT_RESTART`` when streams were added or
    removed (or a stream enriches from a reference table the worker does not follow); the
    supervisor starts the worker again at once with an agent for each. Schema changes of
    existing streams need no restart: every batch resolves to the latest schema.
    """
    names = context.catalog.names()
    for name in names:
        topic = app.topic(events_topic(name), key_serializer="raw", value_serializer="raw")

        async def process(stream: faust.StreamT, name: str = name) -> None:
            batches = stream.take_events(batch_size, within=within)  # type: ignore[attr-defined]
            await process_batches(batches, name, context, max_in_flight)

        app.agent(
            topic,
            name=f"riverbed.process.{name}",
            supervisor_strategy=mode.CrashingSupervisor,
        )(process)

    @app.timer(2.0)
    async def watch_catalog() -> None:
        current = set(context.catalog.names())
        if current != set(names):
            log.warning(
                "streams added %s, removed %s: restarting the worker to match",
                sorted(current - set(names)),
                sorted(set(names) - current),
            )
            os._exit(EXIT_RESTART)
        tables = reference_tables(context.catalog.specs()) - context.reference_tables
        if tables:
            log.warning("enrichment from %s: restarting the worker to load it", sorted(tables))
            os._exit(EXIT_RESTART)


async def process_batches(
    batches: AsyncIterator[Sequence[Any]], name: str, context: AgentContext, max_in_flight: int
) -> None:
    """Route each batch of ``name``'s events and deliver it, up to ``max_in_flight`` at once.

    Every event is held (``incref``) first, before anything that can raise: Faust's
    ``take_events`` acks the whole batch when this loop is left by an exception, and without
    the hold Faust would commit past events never processed (a catalog lookup on a dead Redis
    did exactly that). Only a delivered batch's own ``ack()`` releases its events.
    """
    in_flight: deque[asyncio.Task[None]] = deque()
    async for events in batches:
        for event in events:
            event.message.incref()
        try:
            spec = context.catalog.get(name)
        except StreamNotFound:
            if not context.catalog.is_retired(name):
                raise  # a lookup that failed: crash, the batch stays held
            # Deleted: DELETE /v1/streams drained the stream before removing it, so these are
            # records already processed, read again; the worker restarts without the agent.
            log.warning("%s was deleted: releasing %d records read again", name, len(events))
            for event in events:
                event.ack()
            continue
        routed = await context.route_batch(spec, events)
        in_flight.append(asyncio.ensure_future(context.deliver(spec, routed)))
        while in_flight and (len(in_flight) >= max_in_flight or in_flight[0].done()):
            await in_flight.popleft()  # re-raises a failed delivery


def reference_tables(specs: dict[str, StreamSpec]) -> frozenset[str]:
    """Every reference table some stream enriches from."""
    return frozenset(e.table for spec in specs.values() for e in spec.enrich)
