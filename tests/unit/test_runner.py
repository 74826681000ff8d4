"""commit_positions: after a batch, commit the next offset of every partition it touched."""

from __future__ import annotations

from dataclasses import dataclass

from sinks.runner import commit_positions


@dataclass
class Record:
    """Just the three accessors commit_positions reads from a consumed message."""

    topic_name: str
    partition_id: int
    position: int

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_id

    def offset(self) -> int:
        return self.position


def positions(records: list[Record]) -> set[tuple[str, int, int]]:
    return {(tp.topic, tp.partition, tp.offset) for tp in commit_positions(records)}  # type: ignore[arg-type]


def test_commit_position_is_the_highest_offset_plus_one() -> None:
    assert positions([Record("a", 0, 5), Record("a", 0, 6), Record("a", 0, 7)]) == {("a", 0, 8)}


def test_out_of_order_offsets_still_commit_past_the_highest() -> None:
    assert positions([Record("a", 0, 9), Record("a", 0, 3)]) == {("a", 0, 10)}


def test_each_topic_partition_gets_its_own_position() -> None:
    records = [
        Record("a", 0, 4),
        Record("a", 1, 10),
        Record("b", 0, 0),
        Record("a", 0, 2),
    ]
    assert positions(records) == {("a", 0, 5), ("a", 1, 11), ("b", 0, 1)}


def test_empty_batch_commits_nothing() -> None:
    assert commit_positions([]) == []
