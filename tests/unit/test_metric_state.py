"""Windows of a declared metric: assignment, exact folding, sessions, lateness."""

from __future__ import annotations

import random
from typing import Any

from schemas.catalog import load_catalog
from streams.metrics.aggregations import SKETCH_RELATIVE_ACCURACY
from streams.metrics.definition import Metric, parse_definition
from streams.metrics.state import MetricWindows
from streams.metrics.steps import group_of, metric_item, value_hash
from streams.watermark import RecentlyClosed, Watermark

STREAMS = load_catalog()


def metric(window: dict[str, Any], aggregations: list[str] | None = None) -> Metric:
    return parse_definition(
        {
            "name": "m",
            "stream": "purchases",
            "aggregations": aggregations or ["count", "sum(price)"],
            "window": window,
            "allowed_lateness": "1s",
        },
        STREAMS,
        0,
    )


def windows(window: dict[str, Any], aggregations: list[str] | None = None) -> MetricWindows:
    m = metric(window, aggregations)
    return MetricWindows(m, "*", {}, Watermark(m.lateness_ms))


def by_start(updates: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {u["window_start"]: u for u in updates}


def test_tumbling_windows_count_each_event_once_even_when_redelivered() -> None:
    w = windows({"type": "tumbling", "size": "10s"})
    for key, t in enumerate([1000, 2000, 9999, 10_000]):
        assert w.add(t, {"price": 2.0}, {}, now_ms=0, event_key=key)
    assert w.add(2000, {"price": 2.0}, {}, now_ms=0, event_key=1)  # a redelivered copy
    out = by_start(w.flush(0))
    assert out[0]["values"] == {"count": 3.0, "sum_price": 6.0}
    assert out[10_000]["values"] == {"count": 1.0, "sum_price": 2.0}
    assert not any(u["final"] for u in out.values())


def test_hopping_windows_put_an_event_in_size_over_step_windows() -> None:
    w = windows({"type": "hopping", "size": "30s", "step": "10s"})
    w.add(25_000, {"price": 1.0}, {}, now_ms=0, event_key=1)
    assert sorted(by_start(w.flush(0))) == [0, 10_000, 20_000]


def test_a_window_closes_final_once_the_watermark_passes_its_end() -> None:
    w = windows({"type": "tumbling", "size": "10s"})
    w.add(5000, {"price": 1.0}, {}, now_ms=0, event_key=1)
    w.add(10_500, {"price": 1.0}, {}, now_ms=0, event_key=2)  # watermark 9500: still open
    assert not by_start(w.flush(0))[0]["final"]
    w.add(11_000, {"price": 1.0}, {}, now_ms=0, event_key=3)  # watermark 10000: closed
    updates = by_start(w.flush(0))
    assert updates[0]["final"] and updates[0]["values"]["count"] == 1.0
    assert not w.add(9000, {"price": 1.0}, {}, now_ms=0, event_key=4)  # late now


def test_an_event_is_late_if_any_of_its_hopping_windows_closed() -> None:
    w = windows({"type": "hopping", "size": "20s", "step": "10s"})
    w.add(1000, {}, {}, now_ms=0, event_key=1)
    w.add(12_000, {}, {}, now_ms=0, event_key=2)  # watermark 11000: [0,10) not yet closed
    w.add(21_000, {}, {}, now_ms=0, event_key=3)  # watermark 20000: [0, 20) closes
    w.flush(0)
    before = {s: win.acc.count for s, win in w.windows.items()}
    assert not w.add(15_000, {}, {}, now_ms=0, event_key=4)  # [0,20) closed, [10,30) open
    assert {s: win.acc.count for s, win in w.windows.items()} == before  # counted nowhere


def test_sessions_merge_and_the_absorbed_session_is_retracted() -> None:
    w = windows({"type": "session", "gap": "5s"})
    w.add(10_000, {"price": 1.0}, {}, now_ms=0, event_key=1)
    w.add(12_000, {"price": 1.0}, {}, now_ms=0, event_key=2)  # same session: [10s, 17s)
    first = w.flush(0)
    assert [(u["window_start"], u["window_end"], u["count"]) for u in first] == [
        (10_000, 17_000, 2)
    ]
    w.add(6_000, {"price": 1.0}, {}, now_ms=0, event_key=3)  # within the gap before: merge
    second = w.flush(0)
    assert [(u["window_start"], u["deleted"]) for u in second] == [(10_000, True), (6_000, False)]
    merged = second[1]
    assert (merged["window_end"], merged["count"]) == (17_000, 3)


def test_sessions_further_apart_than_the_gap_stay_apart() -> None:
    w = windows({"type": "session", "gap": "2s"})
    w.add(0, {}, {}, now_ms=0, event_key=1)
    w.add(5000, {}, {}, now_ms=0, event_key=2)
    assert sorted(by_start(w.flush(0))) == [0, 5000]


def test_count_distinct_is_exact_and_percentiles_stay_within_the_sketch_accuracy() -> None:
    w = windows(
        {"type": "tumbling", "size": "1h"},
        ["count_distinct(user_id)", "p50(price)", "p99(price)", "min(price)", "max(price)"],
    )
    rng = random.Random(7)
    prices, users = [], set()
    for key in range(5000):
        price, user = rng.lognormvariate(3, 1), f"u{rng.randint(1, 700)}"
        prices.append(price)
        users.add(user)
        w.add(1000, {"price": price}, {"user_id": value_hash(user)}, now_ms=0, event_key=key)
    values = w.flush(0)[0]["values"]
    assert values["count_distinct_user_id"] == len(users)
    assert (values["min_price"], values["max_price"]) == (min(prices), max(prices))
    ordered = sorted(prices)
    for q, name in ((0.5, "p50_price"), (0.99, "p99_price")):
        exact = ordered[int(q * (len(ordered) - 1))]
        assert abs(values[name] - exact) <= SKETCH_RELATIVE_ACCURACY * exact * 1.0001


def test_groups_escape_the_separator_so_keys_are_unique() -> None:
    m = parse_definition(
        {
            "name": "g",
            "stream": "purchases",
            "aggregations": ["count"],
            "group_by": ["product", "user_id"],
            "window": {"type": "tumbling", "size": 1},
        },
        STREAMS,
        0,
    )
    a, _ = group_of(m, {"product": "a|b", "user_id": "c"})
    b, _ = group_of(m, {"product": "a", "user_id": "b|c"})
    assert a != b
    assert group_of(m, {"product": "x", "user_id": None}) == ("x|", {"product": "x", "user_id": ""})


def test_processing_time_metrics_window_by_the_agents_processed_at() -> None:
    m = parse_definition(
        {
            "name": "p",
            "stream": "purchases",
            "aggregations": ["count"],
            "window": {"type": "tumbling", "size": "1s"},
            "time": "processing",
        },
        STREAMS,
        5000,
    )
    record = {"event_time": 1_000, "processed_at": 7_500, "event_id": "e"}
    _, item = metric_item(m, record, b"", event_key=1, source_mark=None)
    assert item.event_time == 7_500


def test_session_boundaries_do_not_depend_on_arrival_order() -> None:
    def spans(order: list[int]) -> list[tuple[int, int, int]]:
        w = windows({"type": "session", "gap": "10s"})
        for key, t in enumerate(order):
            w.add(t, {}, {}, now_ms=0, event_key=key)
        return sorted((u["window_start"], u["window_end"], u["count"]) for u in w.flush(0))

    assert spans([0, 10_000]) == spans([10_000, 0]) == [(0, 10_000, 1), (10_000, 20_000, 1)]


def test_a_restored_session_state_still_retracts_windows_emitted_after_its_snapshot() -> None:
    from streams.metrics.steps import MetricLogic
    from streams.snapshots import freeze

    w = windows({"type": "session", "gap": "5s"})
    w.add(20_000, {}, {}, now_ms=0, event_key=1)
    snapshot = freeze(w)  # taken before the window was first emitted
    assert [u["window_start"] for u in w.flush(0)] == [20_000]
    logic = MetricLogic(snapshot, lambda name, generation: True, 1000, 0)  # after a crash
    assert logic.state is not None
    logic.state.add(16_000, {}, {}, now_ms=0, event_key=2)  # replayed: merges into 16 s
    updates = logic.state.flush(0)
    assert [(u["window_start"], u["deleted"]) for u in updates] == [(20_000, True), (16_000, False)]


def test_one_future_event_does_not_make_the_ordinary_ones_late() -> None:
    m = metric({"type": "tumbling", "size": "10s"})
    w = MetricWindows(m, "*", {}, Watermark(2000, idle_grace_ms=30_000, source_watermarks=True))
    late = 0
    for second in range(60):
        now = 1_000_000 + second * 1000
        event_time = now + (90_000 if second == 5 else 0)  # one event 90 s in the future
        late += not w.add(event_time, {}, {}, now_ms=now, event_key=second, source_mark=now)
        w.flush(now)
    assert late == 0


def test_a_window_held_open_by_a_lagging_source_is_not_rechecked_in_a_busy_loop() -> None:
    m = metric({"type": "tumbling", "size": "10s"})
    w = MetricWindows(m, "*", {}, Watermark(1000, idle_grace_ms=30_000, source_watermarks=True))
    w.add(5_000, {}, {}, now_ms=100, event_key=1, source_mark=None)
    w.add(50_000, {}, {}, now_ms=100, event_key=2, source_mark=None)  # the source lags
    close = w.next_close_wall()
    assert close is not None and close > 100 + 30_000  # not before the idle advance can start


def test_a_late_copy_of_a_counted_event_is_ignored_but_a_new_late_event_is_not() -> None:
    m = metric({"type": "hopping", "size": "20s", "step": "10s"})
    w = MetricWindows(m, "*", {}, Watermark(1000), closed_keys=RecentlyClosed(60_000))
    w.add(15_000, {}, {}, now_ms=0, event_key=1)  # counted in [0,20) and [10,30)
    w.add(21_000, {}, {}, now_ms=0, event_key=2)  # watermark 20000: [0,20) closes
    w.flush(0)
    counts = {s: win.acc.count for s, win in w.windows.items()}
    assert w.add(15_000, {}, {}, now_ms=100, event_key=1)  # the redelivered copy: ignored
    assert {s: win.acc.count for s, win in w.windows.items()} == counts
    assert not w.add(15_000, {}, {}, now_ms=100, event_key=3)  # really late: reported


def test_closed_window_keys_are_forgotten_after_the_horizon() -> None:
    closed = RecentlyClosed(60_000)
    closed.remember(0, {1})
    closed.remember(30_000, {2})
    closed.prune(61_000)
    assert 1 not in closed and 2 in closed


def test_a_session_the_idle_clock_closed_merges_with_an_event_that_is_not_late() -> None:
    """A quiet group's session went out final by the idle clock; an event that the data say is
    not late bridges it to a new one: both merge, and the absorbed final is retracted."""
    m = metric({"type": "session", "gap": "5s"})
    w = MetricWindows(m, "*", {}, Watermark(m.lateness_ms, idle_grace_ms=10_000))
    assert w.add(10_000, {"price": 1.0}, {}, now_ms=0, event_key=1)
    assert [(u["window_start"], u["final"]) for u in w.flush(20_000)] == [(10_000, True)]
    assert w.add(14_000, {"price": 1.0}, {}, now_ms=20_000, event_key=2)  # within the gap
    assert w.add(8_000, {"price": 1.0}, {}, now_ms=20_000, event_key=3)  # starts it earlier
    out = by_start(w.flush(20_000))
    assert out[10_000]["deleted"] and out[10_000]["final"]
    assert (out[8_000]["count"], out[8_000]["final"], out[8_000]["deleted"]) == (3, True, False)
