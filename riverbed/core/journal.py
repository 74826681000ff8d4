"""The ingest journal: accepted events on disk, fsync'd before the 202, for a broker that forgets.

The embedded broker (tansu) keeps topics in memory only, so an event it acknowledged is not yet
durable. The API therefore also appends every accepted batch to this journal and answers only
once both the broker acknowledged it and the journal's fsync returned. When the broker (or
``riverbed up``) starts again empty, the journal is produced into it again before any component
runs (``riverbed.journal_replay``); the stages downstream are idempotent on ``event_id``.

Layout: ``<dir>/<sequence>.seg`` files, written in order, one at a time, by one process (the
API). An entry is ``len:u32 crc32:u32 payload``; a payload holds when it was written and its
records (topic, key, value, the event's id and time, which the janitor checks against
ClickHouse before a segment is deleted). A writer never appends to a segment it did not
create, so a torn entry can only be the last of a segment; readers stop there.

One fsync serves every batch that arrived while the previous one ran (group commit,
:class:`JournalWriter`), so concurrent requests share the disk's latency instead of queueing
behind it. The journal is bounded: past ``max_bytes`` new batches are refused
(:class:`JournalFull`, a 503) until the janitor deletes segments whose events are stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from riverbed.core.errors import Unavailable

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
_ENTRY_HEAD = struct.Struct("<QI")  # written at (ms), number of records
# topic, key (-1: none), value (-1: a tombstone), event id, event time
_RECORD_HEAD = struct.Struct("<HiiHq")
_SUFFIX = ".seg"
MAX_ENTRY_BYTES = 1 << 30
T = TypeVar("T")


class JournalFull(Unavailable):
    """The journal reached its bound: nothing was accepted. The pipeline is behind (or a stage
    is down); segments are deleted as soon as their events are stored."""

    title = "Journal full"

    def __init__(self, used: int, limit: int) -> None:
        super().__init__(
            f"the ingest journal holds {used} bytes of events not yet stored (limit {limit}); "
            "nothing was accepted, retry once the pipeline caught up",
            retry_after=5,
        )


class JournalFailed(Unavailable):
    """The journal could not be written (disk full, I/O error), so nothing may be called
    accepted. The broker may hold some of the events: a retry with the same ``event_ids`` is
    safe, as after any 503 of ingest."""

    title = "Journal unavailable"

    def __init__(self, reason: str, event_ids: list[str] | None = None) -> None:
        super().__init__(f"the ingest journal could not be written: {reason}", retry_after=5)
        self.event_ids = event_ids or []

    def extra(self) -> dict[str, Any]:
        return {"event_ids": self.event_ids} if self.event_ids else {}


@dataclass(frozen=True)
class JournalRecord:
    """One Kafka record to produce again, and the event it carries (``event_id`` is empty for a
    record that is no event)."""

    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (a deleted reference entry)
    event_id: str = ""
    event_time_ms: int = 0


@dataclass(frozen=True)
class Entry:
    """One journaled batch."""

    written_at_ms: int
    records: list[JournalRecord]


def encode_entry(records: Sequence[JournalRecord], written_at_ms: int) -> bytes:
    """``len crc payload`` for one batch."""
    parts = [_ENTRY_HEAD.pack(written_at_ms, len(records))]
    for record in records:
        topic, event_id = record.topic.encode(), record.event_id.encode()
        key_len = -1 if record.key is None else len(record.key)
        value_len = -1 if record.value is None else len(record.value)
        parts.append(
            _RECORD_HEAD.pack(len(topic), key_len, value_len, len(event_id), record.event_time_ms)
        )
        parts += [topic, record.key or b"", record.value or b"", event_id]
    payload = b"".join(parts)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> Entry:
    """The batch of one entry's payload (its CRC already checked)."""
    written_at, count = _ENTRY_HEAD.unpack_from(payload, 0)
    at = _ENTRY_HEAD.size
    records = []
    for _ in range(count):
        topic_len, key_len, value_len, id_len, event_time = _RECORD_HEAD.unpack_from(payload, at)
        at += _RECORD_HEAD.size
        topic = payload[at : at + topic_len].decode()
        at += topic_len
        key = None if key_len < 0 else payload[at : at + key_len]
        at += max(key_len, 0)
        value = None if value_len < 0 else payload[at : at + value_len]
        at += max(value_len, 0)
        event_id = payload[at : at + id_len].decode()
        at += id_len
        records.append(JournalRecord(topic, key, value, event_id, event_time))
    return Entry(written_at, records)


def read_segment(path: Path) -> Iterator[Entry]:
    """Every whole entry of a segment, in order; stops at a torn or corrupt one (logged when
    more follows it, which only a damaged disk causes)."""
    with path.open("rb") as file:
        data = file.read()
    at = 0
    while at + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, at)
        start, end = at + _HEADER.size, at + _HEADER.size + length
        if length > MAX_ENTRY_BYTES or end > len(data) or zlib.crc32(data[start:end]) != crc:
            if end < len(data):
                log.error(
                    "journal segment %s is damaged at byte %d; later entries skipped", path, at
                )
            return
        yield decode_payload(data[start:end])
        at = end


@dataclass(frozen=True)
class Segment:
    sequence: int
    path: Path
    size: int


class Journal:
    """Segment files in a directory: append and fsync, list, read, delete. Thread-safe; the
    async side is :class:`JournalWriter`."""

    def __init__(
        self,
        directory: Path,
        segment_bytes: int = 32 * 1024 * 1024,
        segment_seconds: float = 30.0,
        max_bytes: int = 4 * 1024**3,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._active: Segment | None = None
        self._opened_at = 0.0
        directory.mkdir(parents=True, exist_ok=True)
        self._closed_bytes = sum(s.size for s in self.segments())

    def segments(self) -> list[Segment]:
        """Every segment on disk, oldest first (the active one last)."""
        found = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            try:
                found.append(Segment(int(path.stem), path, path.stat().st_size))
            except (ValueError, FileNotFoundError):
                continue
        return sorted(found, key=lambda s: s.sequence)

    def closed_segments(self) -> list[Segment]:
        """Segments no writer appends to any more: safe to check and delete."""
        with self._lock:
            active = self._active.sequence if self._active else None
        return [s for s in self.segments() if s.sequence != active]

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._closed_bytes + (self._active.size if self._active else 0)

    def check_room(self) -> None:
        """Raise :class:`JournalFull` when a new batch may not be accepted."""
        used = self.used_bytes
        if used >= self.max_bytes:
            raise JournalFull(used, self.max_bytes)

    def append(self, entries: Sequence[bytes]) -> None:
        """Write encoded entries and fsync them; they are durable when this returns."""
        with self._lock:
            file = self._writable()
            try:
                for entry in entries:
                    file.write(entry)
                file.flush()
                os.fsync(file.fileno())
            except OSError:
                # After a failed fsync the kernel may have dropped the pages: never append
                # behind them; the next batch starts a segment of its own.
                self._close_active()
                raise
            assert self._active is not None
            size = self._active.size + sum(len(e) for e in entries)
            self._active = Segment(self._active.sequence, self._active.path, size)

    def roll(self) -> None:
        """Close the active segment (the next append starts a new one)."""
        with self._lock:
            self._close_active()

    def delete(self, segment: Segment) -> None:
        with self._lock:
            if self._active is not None and segment.sequence == self._active.sequence:
                raise ValueError("the active segment cannot be deleted")
            segment.path.unlink(missing_ok=True)
            self._closed_bytes = max(0, self._closed_bytes - segment.size)

    def entries(self) -> Iterator[Entry]:
        """The snapshot's records, then every whole entry of every segment, oldest first."""
        if self.snapshot_path.exists():
            yield from read_segment(self.snapshot_path)
        for segment in self.segments():
            yield from read_segment(segment.path)

    @property
    def snapshot_path(self) -> Path:
        """Records that outlive their segments (reference entries), folded to their newest."""
        return self.directory / "snapshot.records"

    def snapshot(self) -> list[JournalRecord]:
        if not self.snapshot_path.exists():
            return []
        return [r for entry in read_segment(self.snapshot_path) for r in entry.records]

    def write_snapshot(self, records: Sequence[JournalRecord]) -> None:
        """Replace the snapshot at once: written beside it, fsync'd, renamed over it."""
        temporary = self.snapshot_path.with_suffix(".tmp")
        with temporary.open("wb") as file:
            file.write(encode_entry(records, time.time_ns() // 1_000_000))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.snapshot_path)
        _fsync_directory(self.directory)

    def close(self) -> None:
        self.roll()

    def _writable(self) -> BinaryIO:
        active = self._active
        if active is not None and (
            active.size >= self.segment_bytes
            or time.monotonic() - self._opened_at >= self.segment_seconds
        ):
            self._close_active()
        if self._file is None:
            last = max((s.sequence for s in self.segments()), default=0)
            path = self.directory / f"{last + 1:020d}{_SUFFIX}"
            self._file = path.open("xb")
            self._active = Segment(last + 1, path, 0)
            self._opened_at = time.monotonic()
            _fsync_directory(self.directory)
        return self._file

    def _close_active(self) -> None:
        file, active = self._file, self._active
        self._file, self._active = None, None
        if file is not None and active is not None:
            self._closed_bytes += active.size
            try:
                file.close()
            except OSError as exc:
                log.error("journal segment %s did not close cleanly: %s", active.path, exc)


def _fsync_directory(directory: Path) -> None:
    """A new file's name is durable only once its directory is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournalWriter:
    """Group commit for asyncio callers: batches waiting while an fsync runs share the next one.

    One thread writes; ``write`` returns once its batch is on disk, or raises
    :class:`JournalFailed` when the disk refused it.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._pending: list[
            tuple[Sequence[JournalRecord], asyncio.Future[None], asyncio.AbstractEventLoop]
        ] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    async def write(self, records: Sequence[JournalRecord]) -> None:
        if not records:
            return
        self.journal.check_room()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._stopped:
                raise JournalFailed("the journal is closed")
            self._pending.append((records, future, loop))
            self._cond.notify()
        await future

    def close(self) -> None:
        """Write what is pending, then stop the thread and close the segment."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=30)
        self.journal.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopped:
                    self._cond.wait()
                batch, self._pending = self._pending, []
                if not batch and self._stopped:
                    return
            error: BaseException | None = None
            try:
                now = time.time_ns() // 1_000_000  # encoded here, off the event loop
                self.journal.append([encode_entry(records, now) for records, _, _ in batch])
            except Exception as exc:  # the writer thread must outlive any one batch
                log.exception("journal write failed")
                error = JournalFailed(f"{type(exc).__name__}: {exc}")
            for _, future, loop in batch:
                loop.call_soon_threadsafe(_settle, future, error)


async def alongside(
    delivery: Awaitable[T], journal: JournalWriter | None, records: Sequence[JournalRecord]
) -> T:
    """Await ``delivery`` (the broker's acks) and, with a journal, the fsync of ``records``,
    side by side; raise the broker's error first, then the journal's."""
    if journal is None or not records:
        return await delivery
    delivered, written = await asyncio.gather(
        delivery, journal.write(records), return_exceptions=True
    )
    if isinstance(delivered, BaseException):
        raise delivered
    if isinstance(written, BaseException):
        raise written
    return delivered


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
