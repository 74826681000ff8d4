"""The ingest journal on a real directory: what is written comes back, in order, whole."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from riverbed.core.journal import (
    Journal,
    JournalFull,
    JournalRecord,
    JournalWriter,
    encode_entry,
    read_segment,
)


def _record(i: int) -> JournalRecord:
    key = None if i % 3 == 0 else f"k{i}".encode()
    return JournalRecord("events.orders", key, bytes([i % 256]) * (i % 50), f"id-{i}", 1000 + i)


def test_entries_come_back_in_order_with_every_field(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    batches = [[_record(i), _record(i + 1)] for i in range(0, 20, 2)]
    for batch in batches:
        journal.append([encode_entry(batch, 7)])
    journal.close()
    back = [entry.records for entry in Journal(tmp_path).entries()]
    assert back == batches
    assert all(entry.written_at_ms == 7 for entry in Journal(tmp_path).entries())


def test_a_torn_last_entry_is_skipped_and_the_next_writer_starts_a_new_segment(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path)
    journal.append([encode_entry([_record(1)], 1)])
    journal.close()
    segment = journal.segments()[0]
    torn = encode_entry([_record(2)], 2)
    with segment.path.open("ab") as file:
        file.write(torn[: len(torn) // 2])  # a crash in the middle of a write
    again = Journal(tmp_path)
    again.append([encode_entry([_record(3)], 3)])
    again.close()
    assert [r.event_id for e in again.entries() for r in e.records] == ["id-1", "id-3"]
    assert len(again.segments()) == 2


def test_a_corrupt_byte_stops_reading_that_segment(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append([encode_entry([_record(i)], i) for i in range(3)])
    journal.close()
    path = journal.segments()[0].path
    data = bytearray(path.read_bytes())
    data[len(encode_entry([_record(0)], 0)) + 12] ^= 0xFF  # inside the second entry
    path.write_bytes(bytes(data))
    assert [r.event_id for e in read_segment(path) for r in e.records] == ["id-0"]


def test_segments_roll_by_size_and_only_closed_ones_may_be_deleted(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=200)
    for i in range(10):
        journal.append([encode_entry([_record(i)], i)])
    segments = journal.segments()
    assert len(segments) > 2
    closed = journal.closed_segments()
    assert closed == segments[:-1]
    with pytest.raises(ValueError):
        journal.delete(segments[-1])
    before = journal.used_bytes
    journal.delete(closed[0])
    assert journal.used_bytes == before - closed[0].size
    assert not closed[0].path.exists()


def test_a_full_journal_refuses_new_batches(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=64 * 1024, max_bytes=2048)
    writer = JournalWriter(journal)

    async def fill() -> None:
        with pytest.raises(JournalFull, match="limit 2048"):
            for i in range(1000):
                await writer.write([_record(i)])

    asyncio.run(fill())
    writer.close()
    assert journal.used_bytes >= 2048


def test_concurrent_writes_share_fsyncs_and_all_land(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    fsyncs = 0
    append = journal.append

    def counting(entries: list[bytes]) -> None:
        nonlocal fsyncs
        fsyncs += 1
        append(entries)

    journal.append = counting  # type: ignore[method-assign]
    writer = JournalWriter(journal)

    async def many() -> None:
        await asyncio.gather(*(writer.write([_record(i)]) for i in range(500)))

    asyncio.run(many())
    writer.close()
    ids = sorted(r.event_id for e in Journal(tmp_path).entries() for r in e.records)
    assert ids == sorted(f"id-{i}" for i in range(500))
    assert fsyncs < 500  # batches that waited shared one


def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    writer = JournalWriter(Journal(tmp_path))
    writer.close()

    async def late() -> None:
        await writer.write([_record(1)])

    with pytest.raises(Exception, match="closed"):
        asyncio.run(late())


def test_tombstones_and_the_snapshot_come_back_snapshot_first(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    tombstone = JournalRecord("ref.products", b"gone", None)
    journal.append([encode_entry([tombstone, _record(1)], 1)])
    journal.close()
    kept = JournalRecord("ref.products", b"kept", b'{"category":"c"}')
    journal.write_snapshot([kept])
    entries = list(Journal(tmp_path).entries())
    assert entries[0].records == [kept]
    assert entries[1].records == [tombstone, _record(1)]
    assert Journal(tmp_path).snapshot() == [kept]
