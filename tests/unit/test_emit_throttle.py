"""The emit throttle: the first change goes out at once, later ones once per interval."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from streams.throttle import EmitThrottle


def test_a_change_after_a_quiet_interval_goes_out_at_once() -> None:
    throttle = EmitThrottle(100)
    assert throttle.changed(1_000)
    throttle.emitted(1_000)
    assert throttle.changed(1_150)  # quiet for more than an interval


def test_changes_within_the_interval_are_coalesced_to_its_end() -> None:
    throttle = EmitThrottle(100)
    assert throttle.changed(1_000)
    throttle.emitted(1_000)
    assert not throttle.changed(1_020)
    assert throttle.due == 1_100
    assert not throttle.changed(1_060)  # already due: nothing more to decide
    assert throttle.due == 1_100
    throttle.emitted(1_100)
    assert throttle.due is None


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=200))
def test_never_more_than_one_emission_per_interval(gaps: list[int]) -> None:
    """Replaying changes (and the timer firing when due): emissions stay an interval apart."""
    throttle = EmitThrottle(100)
    now, emissions = 0, []
    for gap in gaps:
        now += gap
        if throttle.due is not None and throttle.due <= now:
            emissions.append(throttle.due)
            throttle.emitted(throttle.due)
        if throttle.changed(now):
            emissions.append(now)
            throttle.emitted(now)
    assert all(b - a >= 100 for a, b in itertools.pairwise(emissions))
