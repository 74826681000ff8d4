"""Aggregations as classes: folding in parts and merging gives what folding the whole gives."""

from __future__ import annotations

import math
from functools import reduce
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.metrics.aggregations import (
    SKETCH_RELATIVE_ACCURACY,
    Aggregator,
    Quantile,
    aggregator,
)

values = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), max_size=60)


def fold(agg: Aggregator, inputs: list[Any]) -> Any:
    return reduce(agg.add, inputs, agg.initial())


@pytest.mark.parametrize("op", ["count", "sum", "min", "max", "avg"])
@given(left=values, right=values)
def test_merging_two_parts_equals_folding_the_whole(
    op: str, left: list[float], right: list[float]
) -> None:
    agg = aggregator(op)
    merged = agg.result(agg.merge(fold(agg, left), fold(agg, right)))
    whole = agg.result(fold(agg, left + right))
    if whole is None:
        assert merged is None
    else:
        assert merged == pytest.approx(whole, rel=1e-9, abs=1e-6)


@given(left=st.lists(st.integers(0, 50)), right=st.lists(st.integers(0, 50)))
def test_count_distinct_is_exact_across_merges(left: list[int], right: list[int]) -> None:
    agg = aggregator("count_distinct")
    merged = agg.merge(fold(agg, left), fold(agg, right))
    assert agg.result(merged) == len(set(left) | set(right))


@given(
    left=st.lists(st.floats(min_value=1, max_value=1e6), max_size=200),
    right=st.lists(st.floats(min_value=1, max_value=1e6), min_size=1, max_size=200),
)
def test_a_merged_quantile_stays_within_the_sketchs_accuracy(
    left: list[float], right: list[float]
) -> None:
    agg = aggregator("p50", 0.5)
    assert isinstance(agg, Quantile)
    merged = agg.result(agg.merge(fold(agg, left), fold(agg, right)))
    ordered = sorted(left + right)
    rank = max(0, math.ceil(0.5 * len(ordered)) - 1)
    low = ordered[max(0, rank - 1)] * (1 - SKETCH_RELATIVE_ACCURACY)
    high = ordered[min(len(ordered) - 1, rank + 1)] * (1 + SKETCH_RELATIVE_ACCURACY)
    assert merged is not None and low <= merged <= high


@pytest.mark.parametrize("op", ["count", "sum", "count_distinct"])
def test_outputs_with_a_value_over_nothing(op: str) -> None:
    agg = aggregator(op)
    assert agg.result(agg.initial()) == 0.0


@pytest.mark.parametrize("op", ["min", "max", "avg"])
def test_outputs_without_a_value_over_nothing_are_left_out(op: str) -> None:
    agg = aggregator(op)
    assert agg.result(agg.initial()) is None
    assert aggregator("p99", 0.99).result(None) is None
