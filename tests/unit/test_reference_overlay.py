"""A process's own reference writes stay visible until the topic brings them back, and an
older record the topic brings meanwhile does not hide them (the read-after-delete race)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from streams.reference_store import ReferenceStore


@dataclass
class Record:
    """What the store reads of a consumed Kafka message."""

    value_: bytes | None
    partition_: int
    offset_: int

    def value(self) -> bytes | None:
        return self.value_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_


def test_an_own_delete_is_not_undone_by_the_put_before_it_arriving_late() -> None:
    store = ReferenceStore("unused:9092", ["products"])
    put = json.dumps({"category": "books"}).encode()
    store.remember("products", "p1", {"category": "books"}, 0, 10)
    store.remember("products", "p1", None, 0, 11)  # deleted before the topic brought the put
    store._apply("products", b"p1", Record(put, 0, 10))  # type: ignore[arg-type]
    assert store.lookup("products", "p1") is None
    store._apply("products", b"p1", Record(None, 0, 11))  # type: ignore[arg-type]
    assert store.lookup("products", "p1") is None
    assert store._own == {}  # caught up: the topic's copy answers from now on


def test_a_later_write_by_another_process_replaces_an_own_write() -> None:
    store = ReferenceStore("unused:9092", ["products"])
    store.remember("products", "p1", {"category": "books"}, 0, 10)
    other = json.dumps({"category": "games"}).encode()
    store._apply("products", b"p1", Record(other, 0, 12))  # type: ignore[arg-type]
    assert store.lookup("products", "p1") == {"category": "games"}
