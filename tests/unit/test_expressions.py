"""The filter language's guards: a filter may read an event, never exhaust the process."""

from __future__ import annotations

import pytest

from schemas.expressions import MAX_LENGTH, Expression, ExpressionError

FIELDS = ["product", "quantity", "tags", "price"]
RECORD = {"product": "x", "quantity": 4_000_000, "tags": ["a"], "price": 1.0}


@pytest.mark.parametrize(
    "text",
    [
        'len(f"{product:>50000000}") > 0',  # a format spec pads to any width
        'product.center(50000000) == ""',  # padding methods
        'quantity.to_bytes(50000000, "big") == 0',
        '("a" * 100).replace("", "b") == ""',  # quadratic growth
        'tags.append("z") or true',  # mutators would change the record for later rules
        "product.__class__ is None",
        "+".join(["price"] * 1000) + " > 0",  # longer than MAX_LENGTH
    ],
)
def test_constructs_that_could_exhaust_or_mutate_are_refused_when_compiled(text: str) -> None:
    with pytest.raises(ExpressionError):
        Expression(text, FIELDS)


@pytest.mark.parametrize(
    "text",
    [
        '"%50000000d" % 1 == ""',
        "quantity ** 4000000 > 0",
        "product * 10**9 == ''",
        # Shared repetition is cheap to build and enormous to write out.
        'str([[0] * 99999] * 99999) == ""',
        'len(str([["a" * 99999] * 10] * 10)) > 0',
        "len(tags * 99999 + tags * 99999 + tags * 99999) > 0",
        "len(([tags * 5000] * 5000)) > 0",
    ],
)
def test_oversized_results_are_refused_at_run_time_as_no_match(text: str) -> None:
    record = dict(RECORD)
    assert Expression(text, FIELDS).matches(record) is False
    assert record == RECORD


def test_small_conversions_and_repetitions_still_work() -> None:
    assert Expression("str(tags) == \"['a']\" and len(tags * 3) == 3", FIELDS).matches(RECORD)
    assert Expression('str() == "" and str(quantity) == "4000000"', FIELDS).matches(RECORD)


def test_reading_methods_and_arithmetic_still_work() -> None:
    assert Expression("product.upper() == 'X' and quantity % 7 == 4", FIELDS).matches(RECORD)
    assert Expression("2 ** 10 == 1024 and tags.count('a') == 1", FIELDS).matches(RECORD)


def test_a_filter_of_the_maximum_length_compiles_and_one_character_more_does_not() -> None:
    longest = "price > 0" + " " * (MAX_LENGTH - len("price > 0"))
    assert Expression(longest, FIELDS).matches(RECORD)
    with pytest.raises(ExpressionError, match="longer than"):
        Expression(longest + " ", FIELDS)
