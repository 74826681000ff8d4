"""Live filters: equal filters are one group, tested once per entry whatever its size."""

from __future__ import annotations

import json
from typing import Any

from api.live.hub import Entry, FieldFilter, LogReader, Subscriber


def entry(n: int, **fields: Any) -> Entry:
    found = Entry.of(f"1-{n}", {b"u": json.dumps(fields).encode()}, "metric")
    assert found is not None
    return found


def test_equal_filters_compare_and_hash_equal() -> None:
    one = FieldFilter({"stream": "a", "group": "g"})
    assert one == FieldFilter({"group": "g", "stream": "a"})
    assert hash(one) == hash(FieldFilter({"group": "g", "stream": "a"}))
    assert one != FieldFilter({"stream": "a"})


def test_a_filter_matches_on_every_field_as_text() -> None:
    matches = FieldFilter({"stream": "a", "window_start": "1000"})
    assert matches({"stream": "a", "window_start": 1000, "count": 3})
    assert not matches({"stream": "b", "window_start": 1000})
    assert not matches({"stream": "a"})
    assert FieldFilter({})({"anything": 1})


class CountingFilter(FieldFilter):
    calls = 0

    def __call__(self, update: dict[str, Any]) -> bool:
        CountingFilter.calls += 1
        return super().__call__(update)


def test_an_entry_is_tested_once_per_distinct_filter() -> None:
    reader = LogReader("redis://unused", "log", "metric")
    on_a = [Subscriber(CountingFilter({"stream": "a"}), 10) for _ in range(1000)]
    on_b = [Subscriber(CountingFilter({"stream": "b"}), 10) for _ in range(10)]
    for subscriber in on_a + on_b:
        reader.register(subscriber)
    assert len(reader.groups) == 2 and reader.count == 1010
    CountingFilter.calls = 0
    reader.offer(entry(1, stream="a"))
    assert CountingFilter.calls == 2
    assert all(len(s.queue) == 1 for s in on_a) and all(not s.queue for s in on_b)
    for subscriber in on_a:
        reader.remove(subscriber)
    assert len(reader.groups) == 1 and reader.count == 10
