"""Metric declarations: what is accepted, what is refused, and where the refusal points."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.catalog import load_catalog
from schemas.expressions import Expression
from streams.metrics.definition import (
    MetricError,
    parse_aggregation,
    parse_definition,
    parse_duration_ms,
)

STREAMS = load_catalog()


def declare(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "revenue",
        "stream": "purchases",
        "aggregations": ["count", "sum(price)"],
        "window": {"type": "tumbling", "size": "1m"},
        **overrides,
    }


def paths(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(MetricError) as caught:
        parse_definition(raw, STREAMS, 5000)
    return [problem.path for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("text", "ms"), [(30, 30_000), ("30s", 30_000), ("5m", 300_000), ("250ms", 250), ("1.5s", 1500)]
)
def test_durations_read_seconds_by_default_and_units_when_given(text: Any, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["soon", "-1s", True, "0.5ms"])
def test_durations_that_are_not_whole_milliseconds_are_refused(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def test_aggregations_name_their_outputs_after_op_and_field() -> None:
    assert parse_aggregation("count").name == "count"
    assert parse_aggregation("sum(price)").name == "sum_price"
    p99 = parse_aggregation("p99(price)")
    assert (p99.name, p99.quantile) == ("p99_price", 0.99)
    assert parse_aggregation({"op": "p50", "field": "price", "as": "median"}).name == "median"


@pytest.mark.parametrize("text", ["median(price)", "count(price)", "sum", "p100(price)"])
def test_unknown_or_malformed_aggregations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_aggregation(text)


def test_a_valid_declaration_keeps_durations_in_ms_so_its_stored_form_parses_the_same() -> None:
    metric = parse_definition(
        declare(window={"type": "hopping", "size": 60, "step": "10s"}), STREAMS, 5000
    )
    assert metric.window_ms("size") == 60_000 and metric.window_ms("step") == 10_000
    again = parse_definition(metric.definition, STREAMS, 5000)
    assert again.definition == metric.definition
    assert again.generation == metric.generation
    assert metric.lateness_ms == 5000  # the default when none is declared


def test_a_changed_declaration_is_a_new_generation() -> None:
    a = parse_definition(declare(), STREAMS, 5000)
    b = parse_definition(declare(filter="price > 1"), STREAMS, 5000)
    assert a.generation != b.generation


def test_every_problem_is_reported_with_its_path() -> None:
    raw = declare(
        aggregations=["sum(currency)", "avg(nope)", "count"],
        group_by=["product", "colour"],
        filter="price > limit",
    )
    assert paths(raw) == ["/aggregations/0", "/aggregations/1", "/group_by/1", "/filter"]


def test_unknown_streams_and_malformed_windows_are_refused() -> None:
    assert paths(declare(stream="nope")) == ["/stream"]
    assert paths(declare(window={"type": "hopping", "size": "1m"})) == ["/window"]
    assert paths(declare(window={"type": "hopping", "size": "1m", "step": "7s"})) == ["/window"]
    assert paths(declare(window={"type": "session", "size": "1m"})) == ["/window"]
    assert paths(declare(name="Bad-Name")) == ["/name"]
    assert paths(declare(extra=1)) == ["/extra"]


def test_processing_time_honours_the_declared_lateness() -> None:
    metric = parse_definition(declare(time="processing", allowed_lateness="9s"), STREAMS, 5000)
    assert metric.lateness_ms == 9000


def test_filters_see_fields_and_treat_a_type_error_as_no_match() -> None:
    metric = parse_definition(
        declare(filter="price > 10 and currency in ('EUR', 'GBP')"), STREAMS, 0
    )
    rule = metric.compile_filter()
    assert rule is not None
    assert rule.matches({"price": 11.0, "currency": "EUR"})
    assert not rule.matches({"price": 11.0, "currency": "USD"})
    assert not rule.matches({"price": None, "currency": "EUR"})  # None > 10 is a TypeError


def test_filters_cannot_reach_random_or_private_attributes() -> None:
    assert paths(declare(filter="rand() > 0.5")) == ["/filter"]
    assert paths(declare(filter="price.__class__ is None")) == ["/filter"]
    rule = Expression("product.isdigit() or product.title() == 'X'", ["product"])
    assert rule.matches({"product": "x"})  # allow-listed str methods work
    assert not Expression("product.count('x') > 0", ["product"]).matches({"product": 1})


def test_compiled_filters_keep_simpleevals_size_limits_and_shield_functions() -> None:
    huge = Expression("len(product * 100000000) > 0", ["product"])
    assert not huge.matches({"product": "xx"})  # refused by safe_mult, not built
    shadowed = Expression("len(product) == 2", ["product", "len"])
    assert shadowed.matches({"product": "xx", "len": 5})  # a field cannot replace a function
