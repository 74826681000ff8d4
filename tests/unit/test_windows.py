"""Tumbling windows: assignment, running and final updates, watermark, lateness, versions."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.metrics.state import window_start
from streams.windows import COUNT_FIELD, WindowState

SIZE = 1000


@given(
    event_time=st.integers(-(10**15), 10**15),
    size=st.integers(1, 10**9),
)
def test_window_start_is_the_floor_multiple_of_the_size(event_time: int, size: int) -> None:
    start = window_start(event_time, size)
    assert start <= event_time < start + size
    assert start % size == 0


@given(event_time=st.integers(-(10**12), -1))
def test_window_start_floors_negative_times_away_from_zero(event_time: int) -> None:
    start = window_start(event_time, SIZE)
    assert start <= event_time < start + SIZE
    assert start < 0


@pytest.mark.parametrize(
    ("event_time", "start"), [(0, 0), (999, 0), (1000, 1000), (-1, -1000), (-1000, -1000)]
)
def test_window_start_examples(event_time: int, start: int) -> None:
    assert window_start(event_time, SIZE) == start


def state(lateness_ms: int = 0) -> WindowState:
    return WindowState(stream="clicks", group="*", size_ms=SIZE, lateness_ms=lateness_ms)


def by_field(updates: list[dict[str, Any]], window: int) -> dict[str, dict[str, Any]]:
    return {u["field"]: u for u in updates if u["window_start"] == window}


def count_updates(updates: list[dict[str, Any]]) -> list[tuple[int, int, bool]]:
    return [
        (u["window_start"], u["count"], u["final"]) for u in updates if u["field"] == COUNT_FIELD
    ]


def test_flush_emits_running_count_for_a_window_that_received_events() -> None:
    windows = state(lateness_ms=5000)
    assert windows.add(1100, {}, now_ms=0)
    assert windows.add(1900, {}, now_ms=0)
    updates = windows.flush(now_ms=10)
    assert updates == [
        {
            "stream": "clicks",
            "group": "*",
            "window_start": 1000,
            "window_end": 2000,
            "final": False,
            "version": 10,
            "field": COUNT_FIELD,
            "count": 2,
            "sum": 2.0,
            "min": None,
            "max": None,
            "avg": None,
        }
    ]


def test_flush_emits_count_sum_min_max_avg_per_numeric_field() -> None:
    windows = state(lateness_ms=5000)
    windows.add(1100, {"price": 10.0, "qty": 1}, now_ms=0)
    windows.add(1200, {"price": 4.0, "qty": 3}, now_ms=0)
    windows.add(1300, {"price": 1.0, "qty": None}, now_ms=0)
    fields = by_field(windows.flush(now_ms=0), 1000)
    assert set(fields) == {COUNT_FIELD, "price", "qty"}
    assert fields[COUNT_FIELD]["count"] == 3
    price = fields["price"]
    assert (price["count"], price["sum"], price["min"], price["max"]) == (3, 15.0, 1.0, 10.0)
    assert price["avg"] == pytest.approx(5.0)
    qty = fields["qty"]
    assert (qty["count"], qty["sum"], qty["min"], qty["max"], qty["avg"]) == (2, 4, 1, 3, 2)


def test_field_that_is_always_null_gets_no_stats_row() -> None:
    windows = state(lateness_ms=5000)
    windows.add(1100, {"price": None}, now_ms=0)
    assert set(by_field(windows.flush(now_ms=0), 1000)) == {COUNT_FIELD}


def test_flush_without_new_events_emits_nothing_for_an_open_window() -> None:
    windows = state(lateness_ms=5000)
    windows.add(1100, {}, now_ms=0)
    windows.flush(now_ms=0)
    assert windows.flush(now_ms=1) == []


def test_only_windows_that_changed_since_the_last_flush_are_emitted() -> None:
    windows = state(lateness_ms=5000)
    windows.add(1100, {}, now_ms=0)
    windows.add(2100, {}, now_ms=0)
    windows.flush(now_ms=0)
    windows.add(2200, {}, now_ms=0)
    assert count_updates(windows.flush(now_ms=1)) == [(2000, 2, False)]


def test_running_values_accumulate_across_flushes() -> None:
    windows = state(lateness_ms=5000)
    windows.add(1100, {}, now_ms=0)
    windows.flush(now_ms=0)
    windows.add(1200, {}, now_ms=0)
    assert count_updates(windows.flush(now_ms=1)) == [(1000, 2, False)]


def test_window_closes_with_a_final_update_when_a_newer_event_moves_the_watermark() -> None:
    windows = state(lateness_ms=200)
    windows.add(1500, {}, now_ms=0)
    windows.add(2200, {}, now_ms=0)  # watermark 2000: window [1000, 2000) is over
    assert count_updates(windows.flush(now_ms=0)) == [(1000, 1, True), (2000, 1, False)]


def test_window_stays_open_until_the_watermark_reaches_its_end() -> None:
    windows = state(lateness_ms=200)
    windows.add(1500, {}, now_ms=0)
    windows.add(2199, {}, now_ms=0)  # watermark 1999
    assert count_updates(windows.flush(now_ms=0)) == [(1000, 1, False), (2000, 1, False)]


def test_watermark_advances_with_wall_time_while_idle_and_closes_the_window() -> None:
    windows = state(lateness_ms=500)
    windows.add(1500, {}, now_ms=10_000)
    windows.flush(now_ms=10_000)
    assert windows.watermark(10_000) == 1000
    assert windows.watermark(10_600) == 1600
    assert windows.flush(now_ms=10_999) == []
    assert count_updates(windows.flush(now_ms=11_000)) == [(1000, 1, True)]


def test_closed_window_is_emitted_final_once_and_then_forgotten() -> None:
    windows = state()
    windows.add(1500, {}, now_ms=0)
    assert count_updates(windows.flush(now_ms=600)) == [(1000, 1, True)]
    assert windows.flush(now_ms=700) == []
    # Closed by the idle clock, it is kept until the events themselves pass its end.
    assert sorted(windows.windows) == [1000]
    windows.add(2100, {}, now_ms=800)
    assert count_updates(windows.flush(now_ms=800)) == [(2000, 1, False)]
    assert sorted(windows.windows) == [2000]


def test_a_window_closed_by_the_event_mark_goes_at_once() -> None:
    windows = state()
    windows.add(1500, {}, now_ms=0)
    windows.add(2100, {}, now_ms=0)
    assert count_updates(windows.flush(now_ms=0)) == [(1000, 1, True), (2000, 1, False)]
    assert sorted(windows.windows) == [2000]


def test_watermark_is_unknown_before_the_first_event() -> None:
    windows = state()
    assert windows.watermark(1_000_000) is None
    assert windows.flush(now_ms=1_000_000) == []


def test_event_for_a_closed_window_is_late_and_rejected() -> None:
    windows = state(lateness_ms=100)
    windows.add(1500, {}, now_ms=0)
    windows.add(2500, {}, now_ms=0)
    windows.flush(now_ms=0)
    assert windows.add(1999, {}, now_ms=0) is False
    assert count_updates(windows.flush(now_ms=1)) == []


def test_late_event_does_not_move_the_watermark_or_open_a_window() -> None:
    windows = state()
    windows.add(5500, {}, now_ms=0)
    windows.flush(now_ms=0)
    assert windows.add(100, {"price": 1.0}, now_ms=0) is False
    assert sorted(windows.windows) == [5000]
    assert windows.max_event_time == 5500


def test_out_of_order_event_within_the_allowed_lateness_is_accepted() -> None:
    windows = state(lateness_ms=1000)
    windows.add(2600, {}, now_ms=0)
    assert windows.add(1800, {}, now_ms=0) is True  # watermark 1600 < end 2000
    assert count_updates(windows.flush(now_ms=0)) == [(1000, 1, False), (2000, 1, False)]


def test_an_event_within_the_lateness_amends_a_window_the_idle_clock_closed() -> None:
    windows = state(lateness_ms=2000)
    windows.add(8500, {}, now_ms=0)
    windows.add(8600, {}, now_ms=0)
    # Idle for 2.5 s: the watermark passes 9000 and [8000, 9000) is emitted final, count 2.
    assert count_updates(windows.flush(now_ms=2500)) == [(8000, 2, True)]
    assert windows.add(9100, {}, now_ms=2500) is True
    # The events say 7100: a straggler at 8200 is within the lateness, not late. It amends
    # the window, which goes out final again with more events (ranked above the first).
    assert windows.add(8200, {}, now_ms=2500) is True
    assert count_updates(windows.flush(now_ms=2500)) == [(8000, 3, True), (9000, 1, False)]
    # Once the events pass its end the window is gone, and an event for it is late.
    assert windows.add(11_500, {}, now_ms=2600) is True
    windows.flush(now_ms=2600)
    assert 8000 not in windows.windows
    assert windows.add(8300, {}, now_ms=2600) is False


def test_a_window_the_mark_passed_takes_events_until_the_flush_that_drops_it() -> None:
    """A backlog read in one batch comes partition after partition: an event behind the mark
    in that batch still counts, as long as its window has not been flushed away."""
    windows = state()
    windows.add(500, {}, now_ms=0, event_key=1)
    windows.add(1500, {}, now_ms=0, event_key=2)  # the event mark passes [0, 1000)
    assert windows.add(600, {}, now_ms=0, event_key=3)  # same batch: counted
    assert count_updates(windows.flush(now_ms=0)) == [(0, 2, True), (1000, 1, False)]
    assert windows.add(500, {}, now_ms=0, event_key=1)  # a copy of a counted one: ignored
    assert not windows.add(700, {}, now_ms=0, event_key=4)  # a new one: late


def test_a_window_the_mark_passed_is_sealed_from_the_next_batch_on() -> None:
    windows = state()
    windows.begin_batch(now_ms=0)
    windows.add(500, {}, now_ms=0, event_key=1)
    windows.add(1500, {}, now_ms=0, event_key=2)  # the event mark passes [0, 1000)
    windows.begin_batch(now_ms=0)  # not flushed yet, but a new batch
    assert windows.add(500, {}, now_ms=0, event_key=1)  # a copy of a counted one: ignored
    assert not windows.add(600, {}, now_ms=0, event_key=3)  # a new one: late
    assert count_updates(windows.flush(now_ms=0)) == [(0, 1, True), (1000, 1, False)]


def test_every_group_of_an_event_seals_its_windows_at_the_same_item() -> None:
    """The stream-wide group flushes often, a quiet group rarely: lateness must not depend on
    when each flushed, or a group would drop silently what the stream-wide group counts."""

    def state(group: str) -> WindowState:
        return WindowState("s", group, 1_000, 0, idle_grace_ms=60_000, source_watermarks=True)

    everyone, quiet = state("*"), state("/quiet")
    batches = [[(500, 1, 500)], [(1_500, 2, 1_500), (900, 3, 1_500)], [(950, 4, 1_500)]]
    for number, batch in enumerate(batches):
        for state_ in (everyone, quiet):
            state_.begin_batch(now_ms=number)
        counted = [
            (
                everyone.add(t, {}, now_ms=number, event_key=k, source_mark=m),
                quiet.add(t, {}, now_ms=number, event_key=k, source_mark=m),
            )
            for t, k, m in batch
        ]
        assert all(a == b for a, b in counted), (number, counted)
        everyone.flush(number)  # only the stream-wide group flushes in between
    assert [c for c, _ in counted] == [False]  # 950 came a batch after the mark passed 1000


def test_versions_increase_strictly_even_when_flushes_share_a_millisecond() -> None:
    windows = state(lateness_ms=10_000)
    versions = []
    for now_ms in (5000, 5000, 5000, 4000, 6000):
        windows.add(1100, {}, now_ms=now_ms)
        versions.append({u["version"] for u in windows.flush(now_ms=now_ms)})
    assert versions == [{5000}, {5001}, {5002}, {5003}, {6000}]


def test_all_updates_of_one_flush_share_one_version() -> None:
    windows = state(lateness_ms=10_000)
    windows.add(1100, {"a": 1.0}, now_ms=0)
    windows.add(2100, {"a": 2.0}, now_ms=0)
    assert {u["version"] for u in windows.flush(now_ms=42)} == {42}


def test_empty_flush_does_not_consume_a_version() -> None:
    windows = state(lateness_ms=10_000)
    windows.add(1100, {}, now_ms=0)
    windows.flush(now_ms=100)
    assert windows.flush(now_ms=100) == []
    windows.add(1200, {}, now_ms=0)
    assert {u["version"] for u in windows.flush(now_ms=100)} == {101}


def test_next_close_wall_is_none_without_open_windows() -> None:
    windows = state()
    assert windows.next_close_wall() is None
    windows.add(1500, {}, now_ms=0)
    windows.flush(now_ms=10_000)
    assert windows.next_close_wall() is None


def test_next_close_wall_is_when_the_idle_watermark_reaches_the_earliest_window_end() -> None:
    windows = state(lateness_ms=500)
    windows.add(1500, {}, now_ms=10_000)
    windows.add(2100, {}, now_ms=10_000)
    close_at = windows.next_close_wall()
    assert close_at == 10_000 + (2000 - 2100) + 500
    windows.flush(now_ms=10_000)
    assert windows.flush(now_ms=close_at - 1) == []
    assert count_updates(windows.flush(now_ms=close_at)) == [(1000, 1, True)]


def test_window_state_survives_pickling_for_snapshots() -> None:
    windows = state(lateness_ms=5000)
    windows.add(1100, {"a": 2.0}, now_ms=0)
    restored = pickle.loads(pickle.dumps(windows))
    assert restored.flush(now_ms=1) == windows.flush(now_ms=1)


def test_a_redelivered_event_is_counted_once_in_its_window() -> None:
    s = state()
    assert s.add(100, {"v": 2.0}, now_ms=0, event_key=7)
    assert s.add(100, {"v": 2.0}, now_ms=0, event_key=7)  # the same event again
    assert s.add(150, {"v": 3.0}, now_ms=0, event_key=8)
    fields = by_field(s.flush(now_ms=0), 0)
    assert fields[COUNT_FIELD]["count"] == 2
    assert fields["v"]["sum"] == 5.0


def test_the_same_event_key_in_different_windows_counts_in_each() -> None:
    s = state(lateness_ms=5 * SIZE)
    s.add(100, {}, now_ms=0, event_key=7)
    s.add(SIZE + 100, {}, now_ms=0, event_key=7)
    updates = s.flush(now_ms=0)
    assert count_updates(updates) == [(0, 1, False), (SIZE, 1, False)]


def test_idle_grace_delays_the_clock_advance_of_a_quiet_group() -> None:
    s = WindowState("st", "g", SIZE, lateness_ms=0, idle_grace_ms=5000)
    s.add(500, {}, now_ms=0)
    # Without grace the window [0, 1000) would close after 500 ms of quiet.
    assert count_updates(s.flush(now_ms=4000)) == [(0, 1, False)]
    assert count_updates(s.flush(now_ms=5600)) == [(0, 1, True)]
    assert s.next_close_wall() is None


def test_next_close_wall_includes_the_idle_grace() -> None:
    s = WindowState("st", "g", SIZE, lateness_ms=100, idle_grace_ms=5000)
    s.add(500, {}, now_ms=10_000)
    assert s.next_close_wall() == 10_000 + (1000 - 500) + 100 + 5000


def test_time_spent_down_is_not_idle_time_after_a_resume() -> None:
    s = WindowState("st", "g", SIZE, lateness_ms=0, idle_grace_ms=1000)
    s.add(500, {}, now_ms=0)
    restored = pickle.loads(pickle.dumps(s))
    restored.resumed(now_ms=60_000)  # the flow was down for a minute
    # An event held up upstream during the outage still lands in its window.
    assert restored.add(900, {}, now_ms=60_100)
    assert count_updates(restored.flush(now_ms=60_100)) == [(0, 2, False)]


def source_state(lateness_ms: int = 0) -> WindowState:
    return WindowState("st", "g", SIZE, lateness_ms, source_watermarks=True, idle_grace_ms=60_000)


def test_with_source_watermarks_a_groups_own_newest_event_does_not_close_windows() -> None:
    s = source_state()
    # One partition raced ahead (a backlog read partition by partition): the source has not
    # seen every partition past the first window yet.
    assert s.add(2500, {}, now_ms=0, source_mark=None)
    assert s.add(100, {}, now_ms=0, source_mark=None)  # not late: the source mark is unknown
    assert count_updates(s.flush(now_ms=0)) == [(0, 1, False), (2000, 1, False)]


def test_the_source_mark_closes_windows_and_makes_older_events_late() -> None:
    s = source_state(lateness_ms=100)
    s.add(500, {}, now_ms=0, source_mark=500)
    assert s.add(1500, {}, now_ms=0, source_mark=1200)  # every partition is past 1100
    assert count_updates(s.flush(now_ms=0)) == [(0, 1, True), (1000, 1, False)]
    assert not s.add(900, {}, now_ms=0, source_mark=1200)


def test_the_source_mark_never_moves_back() -> None:
    s = source_state()
    s.add(500, {}, now_ms=0, source_mark=1500)
    s.add(1600, {}, now_ms=0, source_mark=900)  # an older reading must not reopen anything
    assert s.source_mark == 1500


def test_a_redelivered_copy_arriving_after_its_window_closed_is_ignored_not_late() -> None:
    s = WindowState("s", "*", 1000, 0, late_dedup_ms=60_000)
    s.add(500, {}, now_ms=0, event_key=7)
    s.add(1500, {}, now_ms=0, event_key=8)
    assert [u["final"] for u in s.flush(0) if u["window_start"] == 0] == [True]
    assert s.add(500, {}, now_ms=10, event_key=7)  # a copy of a counted event
    assert not s.add(600, {}, now_ms=10, event_key=9)  # a new event: late


def backlog_group(group: str) -> WindowState:
    """A group's state with source watermarks, 5 s windows and 2 s of lateness."""
    return WindowState("s", group, 5_000, 2_000, idle_grace_ms=30_000, source_watermarks=True)


def test_a_group_never_calls_late_an_event_the_stream_wide_group_counts() -> None:
    """Event time lags wall time (a backlog); one group goes quiet past the idle grace while
    others go on; then an event of the quiet group arrives."""

    everyone, quiet = backlog_group("*"), backlog_group("/quiet")
    assert everyone.add(0, {}, now_ms=0, event_key=1, source_mark=0)
    assert quiet.add(0, {}, now_ms=0, event_key=1, source_mark=0)
    assert everyone.add(1_000, {}, now_ms=10_000, event_key=2, source_mark=1_000)  # another group
    for state_ in (everyone, quiet):
        state_.flush(45_000)
    counted_by_everyone = everyone.add(8_000, {}, now_ms=45_000, event_key=3, source_mark=8_000)
    counted_by_its_group = quiet.add(8_000, {}, now_ms=45_000, event_key=3, source_mark=8_000)
    assert counted_by_everyone
    assert counted_by_its_group
    # The quiet group's idle clock had closed [0, 5000) too: it went out final with its one
    # event, and the same window of the stream-wide group closes by the data, both exact.
    assert [(u["window_start"], u["count"], u["final"]) for u in quiet.flush(45_000)] == [
        (5_000, 1, True)
    ]


def test_an_event_late_by_the_data_is_late_in_every_group() -> None:
    everyone, quiet = backlog_group("*"), backlog_group("/quiet")
    for state_ in (everyone, quiet):
        assert state_.add(0, {}, now_ms=0, event_key=1, source_mark=0)
        assert state_.add(9_000, {}, now_ms=0, event_key=2, source_mark=9_000)
    everyone.flush(0)  # the stream-wide group flushes often; the quiet one much later
    quiet.flush(40_000)
    for state_ in (everyone, quiet):
        assert not state_.add(1_000, {}, now_ms=40_000, event_key=3, source_mark=9_000)


def test_a_window_the_idle_clock_passed_goes_out_final_even_if_an_event_came_first() -> None:
    """An event after a quiet spell raises the clock's floor before the flush: the window the
    idle advance passed must still get its final value."""
    s = WindowState("st", "g", SIZE, lateness_ms=0, idle_grace_ms=1000)
    s.add(500, {}, now_ms=0)
    s.flush(now_ms=0)
    s.add(3500, {}, now_ms=5000)  # quiet for 5 s: the clock passed [0, 1000) meanwhile
    assert count_updates(s.flush(now_ms=5000)) == [(0, 1, True), (3000, 1, True)]


def test_a_snapshot_is_frozen_bytes_that_later_events_do_not_change() -> None:
    """Bytewax pickles a snapshot after the epoch goes on: it must not see later events."""
    from streams.flow.builtin import Item, WindowLogic

    def logic(snapshot: WindowState | bytes | None) -> WindowLogic:
        return WindowLogic(snapshot, lambda stream: SIZE, 5_000, 1_000)

    def item(event_time: int, key: int) -> Item:
        return Item("st", "*", event_time, {"v": 1.0}, b"", str(key), key, None)

    running = logic(None)
    running.on_item([item(100, 1), item(200, 2)])
    snapshot = running.snapshot()
    assert isinstance(snapshot, bytes)
    running.on_item([item(300, 3)])
    restored = logic(snapshot)
    assert restored.state is not None and running.state is not None
    assert restored.state.windows[0].acc.keys == {1, 2}
    assert running.state.windows[0].acc.keys == {1, 2, 3}
    # A recovery store written before snapshots were bytes holds the state itself.
    from_object = logic(pickle.loads(snapshot)).state
    assert from_object is not None and from_object.windows[0].acc.keys == {1, 2}
