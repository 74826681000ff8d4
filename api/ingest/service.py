"""The Ingestor: events in, acknowledged Kafka records out, a result for every event.

It is what ``POST /v1/streams/{s}/events`` calls, and what dead-letter replay and connectors
(webhooks, file imports, pollers) call without HTTP: validate against the stream's schema, give
each event its id and ingest time, encode it in the Confluent wire format, produce it with
acks=all, and answer only once Kafka acknowledged. Rejected events are reported with every
problem at its JSON Pointer and, per the batch rule, recorded in ``dlq.{stream}``.

Encoding is a step of its own (:meth:`Ingestor.prepare` / :meth:`Ingestor.records`), so that
later one Kafka record can carry a batch of events without touching validation or callers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from redis.exceptions import RedisError

from api.ingest.batch import AcceptedEvent, DuplicateEvent, LateCheck, PreparedBatch, prepare_batch
from riverbed.core.errors import Invalid, Unavailable
from riverbed.core.first_copies import FirstCopies, source_position
from riverbed.core.journal import JournalFailed, JournalRecord, JournalWriter, alongside
from riverbed.core.kafka import AsyncProducer, Delivery, KafkaUnavailable, OutgoingRecord
from riverbed.core.topology import dlq_topic, events_topic
from schemas import codec
from schemas.catalog import StreamSpec
from schemas.registry import SchemaRegistry
from schemas.registry_errors import RegistryError
from schemas.stream_catalog import StreamCatalog
from schemas.system import dead_letter

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Draining(Unavailable):
    """Riverbed is stopping; nothing was accepted."""

    title = "Shutting down"

    def __init__(self) -> None:
        super().__init__(
            "Riverbed is draining before a restart; nothing was accepted, retry shortly",
            retry_after=10,
        )


class NotAcknowledged(Unavailable):
    """Kafka did not acknowledge every record. Some may be stored: retrying with the same
    ``event_ids`` is safe, the copies are dropped as duplicates."""

    title = "Broker unavailable"

    def __init__(self, detail: str, event_ids: list[str], retry_after: int = 5) -> None:
        super().__init__(f"Kafka did not acknowledge the events: {detail}", retry_after)
        self.event_ids = event_ids

    def extra(self) -> dict[str, Any]:
        return {"event_ids": self.event_ids}


class EventsRejected(Invalid):
    """No event was accepted: every invalid one is listed, by index, with every problem."""

    status, title = 400, "Invalid events"

    def __init__(self, batch: PreparedBatch, total: int) -> None:
        first = batch.rejected[0]
        super().__init__(
            [p for reject in batch.rejected for p in reject.problems],
            f"{len(batch.rejected)} of {total} events are invalid; first at index "
            f"{first.index}: {first.summary()}",
        )
        self.batch = batch

    def extra(self) -> dict[str, Any]:
        entries = [entry for reject in self.batch.rejected for entry in reject.to_dicts()]
        return {"errors": entries, "accepted": 0}


class UnknownSchemaVersion(Invalid):
    """``schema_version`` names no version of the stream's schema (404), or is no version (400)."""

    status, title = 400, "Unknown schema version"

    def extra(self) -> dict[str, Any]:
        return {**super().extra(), "parameter": "schema_version"}


@dataclass(frozen=True)
class IngestResult:
    """What happened to each event of a call, in the caller's order."""

    batch: PreparedBatch
    total: int

    @property
    def event_ids(self) -> list[str]:
        return [event.event_id for event in self.batch.accepted]

    def errors(self) -> list[dict[str, Any]]:
        """One ``{index, event_id, path, message}`` per problem of every rejected event."""
        return [entry for reject in self.batch.rejected for entry in reject.to_dicts()]

    def per_event(self) -> list[dict[str, Any]]:
        """``{index, status, event_id, ...}`` for every event, in order: ``accepted``;
        ``quarantined`` (stored, but a later stage will set it aside: ``reason``);
        ``duplicate`` (``first_index`` or ``earlier_request``); ``rejected`` (``errors``)."""
        out: list[dict[str, Any]] = [{} for _ in range(self.total)]
        for event in self.batch.accepted:
            out[event.index] = {
                "index": event.index,
                "status": "quarantined" if event.quarantine else "accepted",
                "event_id": event.event_id,
            }
            if event.quarantine:
                out[event.index]["reason"] = event.quarantine
        for duplicate in self.batch.duplicates:
            out[duplicate.index] = {"status": "duplicate", **duplicate.to_dict()}
        for reject in self.batch.rejected:
            out[reject.index] = {
                "index": reject.index,
                "status": "rejected",
                "event_id": reject.event_id,
                "errors": [p.to_dict() for p in reject.problems],
            }
        return out


class Ingestor:
    """Validate, identify, encode and produce events; see the module docstring."""

    def __init__(
        self,
        catalog: StreamCatalog,
        registry: SchemaRegistry,
        producer: AsyncProducer,
        clock: Callable[[], int] = now_ms,
        max_event_bytes: int = 900_000,
        max_future_ms: int | None = 300_000,
        first_copies: FirstCopies | None = None,
        late: LateCheck | None = None,
        journal: JournalWriter | None = None,
    ) -> None:
        self.late = late
        self.journal = journal
        self.catalog = catalog
        self.first_copies = first_copies
        self.registry = registry
        self.producer = producer
        self.clock = clock
        self.max_event_bytes = max_event_bytes
        self.max_future_ms = max_future_ms
        self.draining = False

    def close(self) -> None:
        """Refuse further events (:class:`Draining`) while what was accepted drains."""
        self.draining = True

    async def ingest(
        self,
        stream: str,
        events: Sequence[Any],
        *,
        atomic: bool = False,
        schema_version: str | None = None,
    ) -> IngestResult:
        """Accept the valid events once Kafka acknowledged them; record the invalid ones in
        ``dlq.{stream}`` (unless ``atomic``: then one invalid event rejects all and nothing is
        produced). Raises :class:`EventsRejected` when no event was accepted, ``StreamNotFound``,
        :class:`UnknownSchemaVersion`, :class:`Draining`, ``StreamClosing`` or
        :class:`NotAcknowledged`."""
        if self.draining:
            raise Draining()
        spec = self.catalog.get(stream)
        self.catalog.check_open(stream)
        writer_id, batch = await anyio.to_thread.run_sync(
            self.prepare, spec, list(events), schema_version
        )
        if batch.rejected and (atomic or not batch.accepted):
            if not atomic:
                await self._deliver(
                    self.records(spec, PreparedBatch([], batch.rejected), writer_id)
                )
            raise EventsRejected(batch, len(events))
        return IngestResult(await self.send(spec, batch, writer_id), len(events))

    async def send(self, spec: StreamSpec, batch: PreparedBatch, writer_id: int) -> PreparedBatch:
        """Produce a prepared batch (its rejects as dead letters) and wait for Kafka's acks;
        the answer is ``batch`` with the copies of earlier requests' events moved to its
        duplicates. Raises :class:`NotAcknowledged`, and with a journal ``JournalFull`` (before
        anything is sent) or ``JournalFailed``."""
        self.catalog.check_open(spec.name)  # a stream being deleted takes nothing more
        batch = await self._set_aside_earlier_copies(spec, batch)
        if self.journal is not None:
            self.journal.journal.check_room()  # full: refuse before anything is sent
        records = await anyio.to_thread.run_sync(self.records, spec, batch, writer_id)
        try:
            deliveries = await self._deliver_durably(spec, batch, records)
        except KafkaUnavailable as exc:
            event_ids = [e.event_id for e in batch.accepted]
            raise NotAcknowledged(exc.detail, event_ids, exc.retry_after) from None
        return await self._claim_first_copies(spec, batch, deliveries[: len(batch.accepted)])

    async def _deliver_durably(
        self, spec: StreamSpec, batch: PreparedBatch, records: list[OutgoingRecord]
    ) -> list[Delivery]:
        """Kafka's acks and, with a journal, its fsync of the accepted events, side by side:
        an in-memory broker's ack alone does not make an event durable."""
        if self.journal is None:
            return await self._deliver(records)
        journaled = [
            JournalRecord(r.topic, r.key, r.value, e.event_id, _event_time(spec, e))
            for r, e in zip(records, batch.accepted, strict=False)
        ]
        try:
            return await alongside(self._deliver(records), self.journal, journaled)
        except JournalFailed as exc:
            exc.event_ids = [e.event_id for e in batch.accepted]
            raise

    async def _set_aside_earlier_copies(
        self, spec: StreamSpec, batch: PreparedBatch
    ) -> PreparedBatch:
        """Events whose id an earlier request already brought are duplicates: not sent again.

        Redis unreachable: every event is sent, and the agents drop the copies instead.
        """
        if self.first_copies is None or not batch.accepted:
            return batch
        try:
            earlier = await self.first_copies.claimed(
                spec.name, [e.event_id for e in batch.accepted]
            )
        except RedisError as exc:
            log.warning("first copies not looked up (the agents will drop duplicates): %s", exc)
            return batch
        return _as_duplicates(batch, {e.index for e in batch.accepted if e.event_id in earlier})

    async def _claim_first_copies(
        self, spec: StreamSpec, batch: PreparedBatch, deliveries: Sequence[Delivery]
    ) -> PreparedBatch:
        """Claim each sent event's id for its record; one that another request claimed first
        (the two raced past the lookup) is a duplicate, which the agents will drop."""
        if self.first_copies is None or not batch.accepted:
            return batch
        pairs = [
            (event.event_id, source_position(d.topic, d.partition, d.offset))
            for event, d in zip(batch.accepted, deliveries, strict=True)
        ]
        try:
            firsts = await self.first_copies.claim(spec.name, pairs)
        except RedisError as exc:
            log.warning("first copies not claimed (the agents will claim them): %s", exc)
            return batch
        lost = {e.index for e, first in zip(batch.accepted, firsts, strict=True) if not first}
        return _as_duplicates(batch, lost)

    def prepare(
        self, spec: StreamSpec, events: list[Any], schema_version: str | None = None
    ) -> tuple[int, PreparedBatch]:
        """``(writer schema id, validated batch)``; blocking (a registry cache miss, a version
        lookup), so async callers run it in a thread."""
        writer_id, schema = self._writer_schema(spec, schema_version)
        return writer_id, prepare_batch(
            spec,
            events,
            self.clock(),
            schema,
            max_event_bytes=self.max_event_bytes,
            max_future_ms=self.max_future_ms,
            late=self.late,
        )

    def _writer_schema(self, spec: StreamSpec, version: str | None) -> tuple[int, dict]:
        """The schema events are validated and written with: latest, or a registered version.

        Older versions keep working after an evolution: their records carry their own schema
        id and consumers resolve them to the latest shape.
        """
        if version is None:
            return self.catalog.ids(spec.name).ingest, spec.schema
        if not (version.isascii() and version.isdigit()) and version != "latest":
            error = UnknownSchemaVersion.at(
                "", "schema_version must be a version number or 'latest'"
            )
            error.title = "Bad parameter"
            raise error
        try:
            return self.catalog.ingest_version(spec.name, version)
        except RegistryError as exc:
            error = UnknownSchemaVersion.at("", str(exc))
            if exc.status == 404:
                error.status = 404
            raise error from None

    def records(
        self, spec: StreamSpec, batch: PreparedBatch, writer_id: int
    ) -> list[OutgoingRecord]:
        """Accepted events for ``events.*`` and the rejected ones as dead letters."""
        records = [
            OutgoingRecord(
                events_topic(spec.name),
                event.key,
                codec.encode(self.registry, writer_id, event.datum),
            )
            for event in batch.accepted
        ]
        if batch.rejected:
            dead_letter_id = self.catalog.ids(spec.name).dead_letter
            now = self.clock()
            for reject in batch.rejected:
                dead = dead_letter(
                    spec.name, "ingest", reject.summary(), reject.original, reject.event_id, now
                )
                value = codec.encode(self.registry, dead_letter_id, dead)
                records.append(OutgoingRecord(dlq_topic(spec.name), None, value))
        return records

    async def _deliver(self, records: list[OutgoingRecord]) -> list[Delivery]:
        deliveries = await self.producer.deliver(records)
        failed = [d.error for d in deliveries if d.error]
        if failed:
            raise KafkaUnavailable(
                f"{len(failed)} of {len(records)} records failed (first: {failed[0]}); retry "
                "with the same event_ids, duplicates are dropped"
            )
        return deliveries


def _event_time(spec: StreamSpec, event: AcceptedEvent) -> int:
    """The ``event_time`` the stored row will have: the time field, else the ingest time."""
    value = event.datum.get(spec.time_field) if spec.time_field else None
    return value if isinstance(value, int) else int(event.datum["ingested_at"])


def _as_duplicates(batch: PreparedBatch, indexes: set[int]) -> PreparedBatch:
    """``batch`` with the accepted events at ``indexes`` moved to its duplicates, as copies of
    an event an earlier request brought."""
    if not indexes:
        return batch
    duplicates = [
        *batch.duplicates,
        *(DuplicateEvent(e.index, e.event_id, None) for e in batch.accepted if e.index in indexes),
    ]
    return PreparedBatch(
        accepted=[e for e in batch.accepted if e.index not in indexes],
        rejected=batch.rejected,
        duplicates=sorted(duplicates, key=lambda d: d.index),
    )
