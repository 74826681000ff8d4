"""The live tail's sample: bounded per stream and second, spread over each batch."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.tail import TailSampler


def test_a_busy_stream_is_sampled_at_the_rate() -> None:
    sampler = TailSampler(rate=20)
    taken = 0
    for tick in range(100):  # ten seconds of 50 batches of 1,000 events each second
        taken += len(sampler.take("s", list(range(1000)), now=tick / 10))
    assert 20 * 10 <= taken <= 20 * 10 + 20  # the rate, plus the first burst


def test_a_sample_is_spread_over_the_batch() -> None:
    sampler = TailSampler(rate=4)
    assert sampler.take("s", list(range(100)), now=0.0) == [0, 25, 50, 75]


def test_streams_have_buckets_of_their_own() -> None:
    sampler = TailSampler(rate=2)
    assert len(sampler.take("a", [1, 2, 3], now=0.0)) == 2
    assert len(sampler.take("a", [1, 2, 3], now=0.0)) == 0
    assert len(sampler.take("b", [1, 2, 3], now=0.0)) == 2


def test_a_rate_of_zero_turns_the_tail_off() -> None:
    assert TailSampler(rate=0).take("s", [1, 2, 3], now=0.0) == []


@given(st.lists(st.tuples(st.integers(0, 500), st.floats(0, 1)), max_size=50))
def test_never_more_than_the_burst_plus_the_rate_over_the_time(
    batches: list[tuple[int, float]],
) -> None:
    sampler = TailSampler(rate=10, burst=10)
    now, taken = 0.0, 0
    for size, gap in batches:
        now += gap
        got = sampler.take("s", list(range(size)), now)
        assert len(got) <= size
        taken += len(got)
    assert taken <= 10 + 10 * now + 1e-9
