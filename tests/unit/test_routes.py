"""Routing rules: filter expressions checked at catalog load, evaluated per event."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.catalog import CatalogError, load_catalog
from schemas.expressions import Expression, ExpressionError
from schemas.routes import (
    Route,
    RouteError,
    check_routes,
    check_topic_name,
    compile_routes,
    matching_topics,
    parse_routes,
)
from tests.unit.test_catalog import write_catalog

FIELDS = ("user_id", "product", "price", "quantity", "currency", "category")


def purchase(**overrides: object) -> dict[str, object]:
    return {
        "user_id": "u1",
        "product": "p1",
        "price": 30.0,
        "quantity": 2,
        "currency": "EUR",
        "category": None,
        **overrides,
    }


@pytest.mark.parametrize(
    ("text", "record", "expected"),
    [
        ("price * quantity > 100", purchase(price=60.0), True),
        ("price * quantity > 100", purchase(price=50.0), False),
        ("currency == 'EUR' and quantity >= 2", purchase(), True),
        ("currency in ['USD', 'GBP']", purchase(), False),
        ("currency in set(['EUR']) and len(list(product)) == 2", purchase(), True),
        ("product.startswith('p') and len(user_id) == 2", purchase(), True),
        ("category == null", purchase(), True),
        ("lower(currency) == 'eur'", purchase(), True),
        ("not (price < 10) if quantity else false", purchase(), True),
    ],
)
def test_a_filter_matches_the_records_its_expression_is_true_for(
    text: str, record: dict[str, object], expected: bool
) -> None:
    assert Expression(text, FIELDS).matches(record) is expected


def test_a_null_or_mistyped_value_does_not_match_instead_of_failing() -> None:
    expression = Expression("price * quantity > 100", FIELDS)
    assert expression.matches(purchase(price=None)) is False
    assert Expression("category.upper() == 'X'", FIELDS).matches(purchase()) is False
    assert Expression("price / (quantity - 2) > 1", FIELDS).matches(purchase()) is False


def test_one_expression_serves_many_records() -> None:
    expression = Expression("price > 10", FIELDS)
    verdicts = [expression.matches(purchase(price=p)) for p in (5.0, 50.0, 9.0, 11.0)]
    assert verdicts == [False, True, False, True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("amount > 100", "unknown field 'amount'"),
        ("price >", "not an expression"),
        ("", "empty"),
        ("rand() > 0.5", "unknown function 'rand'"),
        ("[p for p in product]", "ListComp is not supported"),
        ("(x := 1)", "NamedExpr is not supported"),
        ("(lambda: 1)()", "Lambda is not supported"),
        ("price @ quantity", "MatMult is not supported"),
    ],
)
def test_a_bad_expression_is_refused_at_compile_time_with_the_reason(
    text: str, message: str
) -> None:
    with pytest.raises(ExpressionError, match=message):
        Expression(text, FIELDS)


def test_the_unknown_field_message_lists_the_fields() -> None:
    with pytest.raises(ExpressionError) as refused:
        Expression("amount > 100", ("price", "quantity"))
    assert "fields are ['price', 'quantity']" in str(refused.value)


@pytest.mark.parametrize("topic", ["purchases.large", "vip-orders", "Orders_2026", "a" * 249])
def test_kafka_topic_names_are_accepted(topic: str) -> None:
    check_topic_name(topic)


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("large purchases", "not a Kafka topic name"),
        ("", "not a Kafka topic name"),
        ("..", "not a Kafka topic name"),
        ("a" * 250, "not a Kafka topic name"),
        ("clean.large", "reserved"),
        ("events.large", "reserved"),
        ("dlq.large", "reserved"),
        ("ref.products", "reserved"),
        ("_schemas", "reserved"),
        ("metrics", "reserved"),
        (42, "not a Kafka topic name"),
    ],
)
def test_a_route_into_an_invalid_or_riverbed_topic_is_refused(topic: object, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        check_topic_name(topic)


def test_check_routes_names_the_rule_at_fault() -> None:
    routes = (Route("price > 1", "ok"), Route("prise > 1", "also.ok"))
    with pytest.raises(RouteError, match=r"routes\[1\]: unknown field 'prise'"):
        check_routes(routes, FIELDS)


def test_routes_need_exactly_when_and_topic() -> None:
    assert parse_routes([{"when": "price > 1", "topic": "t"}]) == (Route("price > 1", "t"),)
    with pytest.raises(RouteError, match=r"routes\[0\] needs exactly"):
        parse_routes([{"when": "price > 1", "topic": "t", "extra": 1}])
    with pytest.raises(RouteError, match="must be a list"):
        parse_routes({"when": "price > 1", "topic": "t"})


def test_an_event_goes_to_each_matching_target_once_in_declaration_order() -> None:
    routes = compile_routes(
        (
            Route("price > 20", "expensive"),
            Route("quantity > 1", "bulk"),
            Route("price > 25", "expensive"),
            Route("currency == 'USD'", "dollars"),
        ),
        FIELDS,
    )
    assert matching_topics(routes, purchase()) == ["expensive", "bulk"]
    assert matching_topics(routes, purchase(price=1.0, quantity=1)) == []


def test_compiled_routes_are_reused_for_the_same_rules_and_fields() -> None:
    rules = (Route("price > 20", "expensive"),)
    assert compile_routes(rules, FIELDS) is compile_routes(rules, FIELDS)


CATALOG = """
[streams.clicks]
key = "user_id"

[[streams.clicks.routes]]
when = "{when}"
topic = "{topic}"
"""


def test_catalog_routes_may_use_system_fields(tmp_path: Path) -> None:
    toml = CATALOG.format(when="button == 'buy' and event_time > ingested_at", topic="buys")
    spec = load_catalog(write_catalog(tmp_path, toml))["clicks"]
    assert spec.routes == (Route("button == 'buy' and event_time > ingested_at", "buys"),)
    assert spec.route_topics == ["buys"]
    assert spec.to_public()["routes"] == [
        {"when": "button == 'buy' and event_time > ingested_at", "topic": "buys"}
    ]


@pytest.mark.parametrize(
    ("when", "topic", "message"),
    [
        ("amount > 100", "big", r"routes\[0\]: unknown field 'amount'"),
        ("button ==", "big", r"routes\[0\]: not an expression"),
        ("button == 'x'", "clean.big", r"routes\[0\]: topic 'clean.big' is reserved"),
        ("button == 'x'", "big one", r"routes\[0\]: topic 'big one' is not a Kafka topic"),
    ],
)
def test_a_catalog_with_a_bad_route_does_not_load(
    tmp_path: Path, when: str, topic: str, message: str
) -> None:
    with pytest.raises(CatalogError, match=message) as refused:
        load_catalog(write_catalog(tmp_path, CATALOG.format(when=when, topic=topic)))
    assert "[streams.clicks]" in str(refused.value)


def test_the_bundled_catalog_routes_large_purchases() -> None:
    spec = load_catalog()["purchases"]
    assert spec.route_topics == ["purchases.large"]
    routes = compile_routes(spec.routes, tuple(f["name"] for f in spec.clean_schema["fields"]))
    assert matching_topics(routes, purchase(price=60.0)) == ["purchases.large"]
    assert matching_topics(routes, purchase(price=40.0)) == []
