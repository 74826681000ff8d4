"""The journal's janitor against a real ClickHouse (chdb): a segment goes only once every event
in it is stored and it is older than the retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.ingest.journal import JournalJanitor
from riverbed.core.clickhouse import ChdbEngine
from riverbed.core.journal import Journal, JournalRecord, encode_entry
from sinks.ddl import create_dead_letters_table

pytestmark = pytest.mark.integration

NOW = 1_800_000_000_000


def _events(ids: list[str], stream: str = "s") -> list[JournalRecord]:
    return [JournalRecord(f"events.{stream}", None, b"v", i, NOW - 5_000) for i in ids]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> ChdbEngine:
    engine = ChdbEngine(tmp_path_factory.mktemp("janitor-chdb"))
    engine.command("CREATE DATABASE IF NOT EXISTS jdb")
    engine.command(
        "CREATE TABLE jdb.events_s (event_time DateTime64(3, 'UTC'), event_id String) "
        "ENGINE = ReplacingMergeTree ORDER BY (event_time, event_id)"
    )
    engine.command(create_dead_letters_table("jdb"))
    return engine


def _store(engine: ChdbEngine, ids: list[str]) -> None:
    engine.insert_json_rows(
        "jdb", "events_s", [{"event_time": (NOW - 5_000) / 1000, "event_id": i} for i in ids]
    )


def _janitor(journal: Journal, engine: ChdbEngine, clock: list[int]) -> JournalJanitor:
    return JournalJanitor(journal, engine, "jdb", 60, lambda: ["s"], clock_ms=lambda: clock[0])


def test_a_segment_stays_until_each_of_its_events_is_stored(
    tmp_path: Path, engine: ChdbEngine
) -> None:
    journal = Journal(tmp_path)
    journal.append([encode_entry(_events(["a1", "a2", "a3"]), NOW)])
    journal.roll()
    clock = [NOW + 61_000]
    janitor = _janitor(journal, engine, clock)
    _store(engine, ["a1", "a2"])
    assert janitor.sweep() == 0
    assert "not stored yet" in janitor.waiting_on and "'s': 1" in janitor.waiting_on
    engine.insert_json_rows(
        "jdb",
        "dead_letters",
        [
            {
                "dlq_id": "x",
                "stream": "s",
                "stage": "agents",
                "error": "e",
                "original": "",
                "event_id": "a3",
                "failed_at": NOW / 1000,
            }
        ],
    )
    assert janitor.sweep() == 1  # a dead letter is stored too
    assert journal.segments() == []


def test_a_stored_segment_stays_for_the_retention_and_the_active_one_always(
    tmp_path: Path, engine: ChdbEngine
) -> None:
    journal = Journal(tmp_path)
    journal.append([encode_entry(_events(["b1"]), NOW)])
    journal.roll()
    journal.append([encode_entry(_events(["b2"]), NOW)])  # the active segment
    _store(engine, ["b1", "b2"])
    clock = [NOW + 30_000]
    janitor = _janitor(journal, engine, clock)
    assert janitor.sweep() == 0
    assert "within the retention" in janitor.waiting_on
    clock[0] = NOW + 61_000
    assert janitor.sweep() == 1
    assert len(journal.segments()) == 1  # the one still written to


def test_events_of_a_deleted_stream_do_not_hold_the_journal(
    tmp_path: Path, engine: ChdbEngine
) -> None:
    journal = Journal(tmp_path)
    journal.append([encode_entry(_events(["c1"], stream="gone"), NOW)])
    journal.roll()
    assert _janitor(journal, engine, [NOW + 61_000]).sweep() == 1


def test_reference_entries_outlive_their_segment_in_the_snapshot(
    tmp_path: Path, engine: ChdbEngine
) -> None:
    journal = Journal(tmp_path)
    journal.write_snapshot([JournalRecord("ref.products", b"old", b"1")])
    journal.append(
        [
            encode_entry(
                [
                    JournalRecord("ref.products", b"a", b"1"),
                    JournalRecord("ref.products", b"a", b"2"),
                    JournalRecord("ref.products", b"old", None),
                    *_events(["d1"]),
                ],
                NOW,
            )
        ]
    )
    journal.roll()
    _store(engine, ["d1"])
    assert _janitor(journal, engine, [NOW + 61_000]).sweep() == 1
    assert journal.snapshot() == [JournalRecord("ref.products", b"a", b"2")]
    replayed = [r for entry in journal.entries() for r in entry.records]
    assert replayed == [JournalRecord("ref.products", b"a", b"2")]


def test_under_pressure_stored_segments_go_within_the_retention_but_unstored_ones_stay(
    tmp_path: Path, engine: ChdbEngine
) -> None:
    journal = Journal(tmp_path)
    for batch in (["e1"], ["e2"], ["e3"], ["e4-not-stored"]):
        journal.append([encode_entry(_events(batch), NOW)])
        journal.roll()
    _store(engine, ["e1", "e2", "e3"])
    sizes = [s.size for s in journal.segments()]
    journal.max_bytes = int(sum(sizes) / 0.8) - 1  # just past the pressure mark
    janitor = _janitor(journal, engine, [NOW + 1_000])  # everything within the retention
    assert janitor.under_pressure
    assert janitor.sweep() == 1  # the oldest stored segment is enough to get below the mark
    assert not janitor.under_pressure and janitor.retention_cut == 1
    journal.max_bytes = 1  # far past it: every stored segment goes, the unstored one stays
    assert janitor.sweep() == 2
    assert "not stored yet" in janitor.waiting_on
    assert [r.event_id for e in journal.entries() for r in e.records] == ["e4-not-stored"]
