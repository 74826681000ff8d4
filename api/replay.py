"""Dead-letter replay that reports what really happened to each letter.

Each letter goes back where it failed, and only after the check that failed it passes now:

- ``ingest``: the posted JSON is validated again against the current schema and sent through
  the Ingestor, so an event whose ``event_id`` was accepted since is a duplicate (skipped, not
  sent), and one still invalid fails with every problem;
- ``process``: the original record is decoded and checked exactly as the agents do
  (:func:`streams.processing.decode_and_enrich`); one that would come straight back fails with
  the reason, the others go back to ``events.*`` with their first-copy claim released (no stage
  kept the event, so its new record must not count as a duplicate of the old one);
- ``sink``: the clean record is inserted into ClickHouse again (not re-produced, which would
  count it twice in the aggregates);
- anything else (a late event: the event itself is stored) cannot reopen a closed window and is
  skipped with that reason.

``replayed`` lists only letters that were put back and acknowledged (by Kafka or ClickHouse).
"""

from __future__ import annotations

import base64
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from api.ingest.batch import PreparedBatch, parse_events
from api.services import Services
from riverbed.core.clickhouse import ClickHouseError
from riverbed.core.errors import RiverbedError, Unavailable
from riverbed.core.kafka import OutgoingRecord
from riverbed.core.topology import events_topic
from schemas import codec
from schemas.catalog import EVENT_ID_FIELD, StreamSpec
from sinks.ddl import row_converter
from streams.processing import NOT_PROCESSABLE, ProcessingRules, decode_and_enrich


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, dlq_id: str, reason: str) -> None:
        self.failed.append({"dlq_id": dlq_id, "reason": reason})

    def skip(self, dlq_id: str, reason: str) -> None:
        self.skipped.append({"dlq_id": dlq_id, "reason": reason})


async def replay(services: Services, spec: StreamSpec, letters: list[dict]) -> ReplayReport:
    """Put ``letters`` back (see the module docstring); never raises for one bad letter."""
    report = ReplayReport()
    by_stage: dict[str, list[dict]] = defaultdict(list)
    for letter in letters:
        by_stage[letter["stage"]].append(letter)
    await _replay_ingest(services, spec, by_stage.pop("ingest", []), report)
    await _replay_process(services, spec, by_stage.pop("process", []), report)
    await _replay_sink(services, spec, by_stage.pop("sink", []), report)
    for stage_letters in by_stage.values():
        for letter in stage_letters:
            report.skip(
                letter["dlq_id"],
                "late events cannot reopen a closed window; the event itself is stored",
            )
    return report


async def _replay_ingest(
    services: Services, spec: StreamSpec, letters: list[dict], report: ReplayReport
) -> None:
    events: list[Any] = []
    owners: list[str] = []
    for letter in letters:
        try:
            (event,) = parse_events(base64.b64decode(letter["original"]), "application/json")
        except (ValueError, RiverbedError) as exc:
            report.fail(letter["dlq_id"], str(exc))
            continue
        if isinstance(event, dict) and EVENT_ID_FIELD not in event and letter["event_id"]:
            event[EVENT_ID_FIELD] = letter["event_id"]
        events.append(event)
        owners.append(letter["dlq_id"])
    if not events:
        return
    writer_id, batch = await anyio.to_thread.run_sync(services.ingestor.prepare, spec, events)
    for reject in batch.rejected:
        report.fail(owners[reject.index], f"still invalid: {reject.summary()}")
    try:
        sent = await services.ingestor.send(
            spec, PreparedBatch(batch.accepted, [], batch.duplicates), writer_id
        )
    except Unavailable as exc:
        for event in batch.accepted:
            report.fail(owners[event.index], f"Kafka: {exc.detail}")
        return
    for duplicate in sent.duplicates:
        report.skip(
            owners[duplicate.index],
            f"duplicate: event {duplicate.event_id} is already in the stream",
        )
    report.replayed += [owners[event.index] for event in sent.accepted]


async def _replay_process(
    services: Services, spec: StreamSpec, letters: list[dict], report: ReplayReport
) -> None:
    rules = ProcessingRules(services.settings.max_future_skew_seconds * 1000)

    def check() -> list[tuple[dict, bytes]]:
        ready = []
        now = time.time_ns() // 1_000_000
        for letter in letters:
            raw = base64.b64decode(letter["original"])
            try:
                decode_and_enrich(services.registry, services.catalog, spec.name, raw, now, rules)
            except NOT_PROCESSABLE as exc:
                report.fail(letter["dlq_id"], f"still fails: {exc}")
                continue
            ready.append((letter, raw))
        return ready

    ready = await anyio.to_thread.run_sync(check)
    if not ready:
        return
    first_copies = services.ingestor.first_copies
    if first_copies is not None:
        event_ids = [letter["event_id"] for letter, _ in ready if letter["event_id"]]
        await first_copies.release(spec.name, event_ids)
    records = [OutgoingRecord(events_topic(spec.name), None, raw) for _, raw in ready]
    try:
        errors = await services.producer.produce(records)
    except Unavailable as exc:
        errors = [exc.detail] * len(records)
    for (letter, _), error in zip(ready, errors, strict=True):
        if error:
            report.fail(letter["dlq_id"], f"Kafka: {error}")
        else:
            report.replayed.append(letter["dlq_id"])


async def _replay_sink(
    services: Services, spec: StreamSpec, letters: list[dict], report: ReplayReport
) -> None:
    def rows() -> list[tuple[str, dict[str, Any]]]:
        clean_id = services.catalog.ids(spec.name).clean
        convert = row_converter(services.registry.schema(clean_id))
        ready = []
        for letter in letters:
            original = base64.b64decode(letter["original"])
            try:
                _, record = codec.decode(services.registry, original, reader_id=clean_id)
                ready.append((letter["dlq_id"], convert(record)))
            except (*NOT_PROCESSABLE, ValueError, TypeError) as exc:
                report.fail(letter["dlq_id"], f"cannot be read: {exc}")
        return ready

    ready = await anyio.to_thread.run_sync(rows)
    if not ready:
        return
    try:
        await anyio.to_thread.run_sync(services.events.insert, spec.name, [r for _, r in ready])
    except ClickHouseError as exc:
        for dlq_id, _ in ready:
            report.fail(dlq_id, f"ClickHouse: {exc}")
    else:
        report.replayed += [dlq_id for dlq_id, _ in ready]
