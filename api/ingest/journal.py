"""The API's side of the ingest journal: replay it into a broker that came back empty, and
delete the segments whose events are stored.

**Replay.** The in-memory broker forgets everything when it dies, and so does a ``riverbed up``
that stopped without a drain. Topics, once created, are the broker's memory: the API creates a
marker topic after a replay, so finding it missing at start-up means the broker is new. Then,
before ingest opens, every journaled record is produced again, in the order it was accepted.
Each replayed event's first-copy key is released first: it holds the position of a record in
the dead broker, and would make the agents drop the replayed copy as a duplicate. The stages
downstream are idempotent on ``event_id`` (ReplacingMergeTree, window dedup), and a window's
final value in Redis and ClickHouse is never replaced by a later one, so re-counting a window
from part of its events cannot undo it.

**Deletion.** A closed segment is deleted once it is older than the retention (the windows
still open when a broker dies can be computed again from it) and every event it holds is in
ClickHouse, as a row of its stream or as a dead letter. Reference entries it holds are folded
into the journal's snapshot first (the newest value per key), which a replay produces first.
ClickHouse is asked, not Kafka's offsets: stored is the promise, and a broker's offsets die
with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from confluent_kafka.admin import AdminClient

from riverbed.core.clickhouse import ClickHouse, ClickHouseError, quote
from riverbed.core.first_copies import FirstCopies
from riverbed.core.journal import Entry, Journal, JournalRecord, Segment, read_segment
from riverbed.core.kafka import AsyncProducer, KafkaUnavailable, OutgoingRecord, ensure_topics
from riverbed.core.settings import Settings
from riverbed.core.topology import (
    DEAD_LETTERS_TABLE,
    EVENTS_PREFIX,
    JOURNAL_MARKER_TOPIC,
    REFERENCE_PREFIX,
    events_table,
)

log = logging.getLogger(__name__)

REPLAY_BATCH = 5_000  # records in flight at once while replaying
# Past this share of its bound, the janitor deletes stored segments within the retention too:
# windows older than what is left can then no longer be computed again after a broker dies,
# which is better than refusing events (only segments not yet stored should fill the bound).
PRESSURE = 0.8
CHECK_BATCH = 1_000  # event ids per ClickHouse lookup


def broker_is_new(settings: Settings) -> bool:
    """No marker topic: this broker has not seen this journal (it started empty)."""
    admin = AdminClient({"bootstrap.servers": settings.require_kafka()})
    return JOURNAL_MARKER_TOPIC not in admin.list_topics(timeout=10).topics


async def replay(
    settings: Settings,
    journal: Journal,
    producer: AsyncProducer,
    first_copies: FirstCopies | None,
    report: Callable[[str], None] = log.warning,
) -> int:
    """Produce every journaled record again when the broker is new; the number replayed.

    Raises ``KafkaUnavailable`` or a ``RedisError`` (the API then fails to start and is
    restarted, and replays again) rather than opening ingest with part of the journal missing
    from the broker or bound to be dropped as duplicates.
    """
    if not await anyio.to_thread.run_sync(broker_is_new, settings):
        return 0
    total = sum(s.size for s in journal.segments())
    if total:
        report(f"journal: the broker is new; replaying {total / 1e6:.1f} MB of accepted events")
    replayed, pending, pending_records = 0, [], 0
    started = time.monotonic()
    for entry in journal.entries():
        pending.append(entry)
        pending_records += len(entry.records)
        if pending_records >= REPLAY_BATCH:
            replayed += await _produce(pending, producer, first_copies)
            pending, pending_records = [], 0
            report(f"journal: {replayed} records replayed")
    replayed += await _produce(pending, producer, first_copies)
    await anyio.to_thread.run_sync(lambda: ensure_topics(settings, [JOURNAL_MARKER_TOPIC]))
    if replayed:
        report(f"journal: {replayed} records replayed in {time.monotonic() - started:.1f}s")
    return replayed


async def _produce(
    entries: list[Entry], producer: AsyncProducer, first_copies: FirstCopies | None
) -> int:
    records = [r for entry in entries for r in entry.records]
    if not records:
        return 0
    if first_copies is not None:
        by_stream: dict[str, list[str]] = defaultdict(list)
        for record in records:
            if record.event_id and record.topic.startswith(EVENTS_PREFIX):
                by_stream[record.topic.removeprefix(EVENTS_PREFIX)].append(record.event_id)
        # Not released, the agents would drop the replayed copies as duplicates of records in
        # the dead broker: a RedisError fails the start (and the replay is tried again).
        for stream, event_ids in by_stream.items():
            await first_copies.release(stream, event_ids)
    deliveries = await producer.deliver([OutgoingRecord(r.topic, r.key, r.value) for r in records])
    failed = [d.error for d in deliveries if d.error]
    if failed:
        raise KafkaUnavailable(
            f"journal replay: {len(failed)} records not acknowledged (first: {failed[0]})"
        )
    return len(records)


@dataclass
class SegmentContents:
    """What the janitor needs of a segment: its events by stream, their event-time span, when
    it was last written (ms), and the records that must outlive it."""

    events: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    low: int = 2**63
    high: int = 0
    written: int = 0
    kept: list[JournalRecord] = field(default_factory=list)


def segment_contents(segment: Segment) -> SegmentContents:
    contents = SegmentContents()
    for entry in read_segment(segment.path):
        contents.written = max(contents.written, entry.written_at_ms)
        for record in entry.records:
            if record.topic.startswith(REFERENCE_PREFIX):
                contents.kept.append(record)
            elif record.event_id and record.topic.startswith(EVENTS_PREFIX):
                contents.events[record.topic.removeprefix(EVENTS_PREFIX)].add(record.event_id)
                contents.low = min(contents.low, record.event_time_ms)
                contents.high = max(contents.high, record.event_time_ms)
    return contents


def fold_into_snapshot(journal: Journal, records: list[JournalRecord]) -> None:
    """Reference entries live in a compacted topic, not in ClickHouse: before their segment
    goes, the newest value of each key joins the snapshot (a deleted key leaves it)."""
    if not records:
        return
    newest = {(r.topic, r.key): r for r in journal.snapshot()}
    for record in records:
        newest[(record.topic, record.key)] = record
    journal.write_snapshot([r for r in newest.values() if r.value is not None])


def missing_events(
    clickhouse: ClickHouse,
    database: str,
    stream: str,
    event_ids: set[str],
    low_ms: int,
    high_ms: int,
) -> int:
    """How many of ``event_ids`` are in neither the stream's table nor its dead letters."""
    in_table = (
        f"SELECT DISTINCT event_id FROM {quote(database)}.{quote(events_table(stream))} "
        "WHERE event_time BETWEEN fromUnixTimestamp64Milli({low:Int64}) "
        "AND fromUnixTimestamp64Milli({high:Int64}) AND event_id IN {ids:Array(String)}"
    )
    in_dead_letters = (
        f"SELECT DISTINCT event_id FROM {quote(database)}.{quote(DEAD_LETTERS_TABLE)} "
        "WHERE stream = {stream:String} AND event_id IN {ids:Array(String)}"
    )
    remaining = set(event_ids)
    for sql, parameters in (
        (in_table, {"low": low_ms, "high": high_ms}),
        (in_dead_letters, {"stream": stream}),
    ):
        ordered = sorted(remaining)
        for at in range(0, len(ordered), CHECK_BATCH):
            chunk = ordered[at : at + CHECK_BATCH]
            found = clickhouse.query(sql, parameters={**parameters, "ids": chunk})
            remaining -= {row[0] for row in found.rows}
    return len(remaining)


class JournalJanitor:
    """Deletes stored segments, oldest first; stops at the first one still needed."""

    def __init__(
        self,
        journal: Journal,
        clickhouse: ClickHouse,
        database: str,
        retention_seconds: float,
        streams: Callable[[], Iterable[str]],
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.journal = journal
        self.clickhouse = clickhouse
        self.database = database
        self.retention_ms = int(retention_seconds * 1000)
        self.streams = streams
        self.clock_ms = clock_ms
        self.waiting_on = ""  # why the oldest segment is kept, for logs and /readyz
        self.replayed = 0  # records replayed into a new broker when this process started
        self.retention_cut = 0  # stored segments deleted within the retention, under pressure
        # A closed segment never changes: the one a sweep stopped at is not read again.
        self._read: tuple[int, SegmentContents] | None = None

    @property
    def under_pressure(self) -> bool:
        return self.journal.used_bytes >= self.journal.max_bytes * PRESSURE

    def status(self) -> dict[str, Any]:
        """What /readyz shows of the journal."""
        return {
            "bytes": self.journal.used_bytes,
            "max_bytes": self.journal.max_bytes,
            "segments": len(self.journal.segments()),
            "kept_because": self.waiting_on or None,
            "replayed_at_start": self.replayed,
            "deleted_within_retention": self.retention_cut,
        }

    def sweep(self) -> int:
        """Delete what may go; the number of segments deleted. Under pressure (the journal
        past ``PRESSURE`` of its bound), stored segments go even within the retention, oldest
        first, until it is below again."""
        deleted = 0
        known = set(self.streams())
        for segment in self.journal.closed_segments():
            contents = self._contents(segment)
            within = bool(contents.written) and (
                self.clock_ms() - contents.written < self.retention_ms
            )
            if within and not self.under_pressure:
                self.waiting_on = f"segment {segment.sequence} is within the retention"
                break
            missing = {
                stream: missing_events(
                    self.clickhouse, self.database, stream, wanted, contents.low, contents.high
                )
                for stream, wanted in contents.events.items()
                if stream in known  # a deleted stream's events are no longer wanted
            }
            if any(missing.values()):
                self.waiting_on = f"segment {segment.sequence}: events not stored yet {missing}"
                break
            fold_into_snapshot(self.journal, contents.kept)
            self.journal.delete(segment)
            deleted += 1
            if within:
                self.retention_cut += 1
                log.warning(
                    "journal past %d%% of its bound: deleted stored segment %d within the "
                    "retention (its windows cannot be computed again after a broker death)",
                    PRESSURE * 100,
                    segment.sequence,
                )
        else:
            self.waiting_on = ""
        return deleted

    def _contents(self, segment: Segment) -> SegmentContents:
        if self._read is None or self._read[0] != segment.sequence:
            self._read = (segment.sequence, segment_contents(segment))
        return self._read[1]

    async def run(self, interval: float = 30.0, pressed_interval: float = 2.0) -> None:
        while True:
            try:
                await anyio.to_thread.run_sync(self.sweep)
            except (ClickHouseError, OSError) as exc:
                log.warning("journal janitor: %s (will retry)", exc)
            await asyncio.sleep(pressed_interval if self.under_pressure else interval)
