"""Routing rules: events of a stream that match a filter are also written to another topic.

A rule is declared per stream (``[[streams.NAME.routes]]`` with ``when`` and ``topic``). A
matching event still goes to ``clean.NAME``; the target gets the same record, in the same
Avro shape (the clean schema, Confluent wire format), with the same key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from riverbed.core.errors import Invalid
from riverbed.core.topology import RESERVED_TOPIC_PREFIXES, RESERVED_TOPICS
from schemas.expressions import Expression, ExpressionError

# Kafka's own rule for topic names (legal characters, at most 249).
KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class RouteError(Invalid):
    """A routing rule is malformed; the message says which part."""


@dataclass(frozen=True)
class Route:
    """``when`` (a filter over the clean record's fields) -> ``topic``; plain data."""

    when: str
    topic: str


def check_topic_name(topic: Any) -> None:
    """Raise :class:`RouteError` unless ``topic`` can be created and is not Riverbed's own."""
    if not isinstance(topic, str) or not KAFKA_TOPIC.match(topic) or topic in (".", ".."):
        raise RouteError(
            f"topic {topic!r} is not a Kafka topic name ([A-Za-z0-9._-], at most 249 characters)"
        )
    # Topics Riverbed reads by prefix or owns: a route into one of them would be read back as a
    # stream of its own (the flow and sinks subscribe to ``^clean\..+``), or corrupt a system log.
    if topic in RESERVED_TOPICS or topic.startswith(RESERVED_TOPIC_PREFIXES):
        raise RouteError(
            f"topic {topic!r} is reserved for Riverbed (names starting with "
            f"{', '.join(RESERVED_TOPIC_PREFIXES)} or one of {sorted(RESERVED_TOPICS)})"
        )


def parse_routes(declared: Any) -> tuple[Route, ...]:
    """``routes`` of a stream's declaration (a list of tables) as :class:`Route` s.

    Only the shape is checked here; :func:`check_routes` checks them against the fields.
    """
    if not isinstance(declared, list):
        raise RouteError("'routes' must be a list of tables ([[streams.NAME.routes]])")
    routes = []
    for index, rule in enumerate(declared):
        if isinstance(rule, Route):
            routes.append(rule)
            continue
        if not isinstance(rule, dict) or set(rule) != {"when", "topic"}:
            raise RouteError(f"routes[{index}] needs exactly 'when' and 'topic'")
        if not isinstance(rule["when"], str):
            raise RouteError(f"routes[{index}].when must be a string")
        routes.append(Route(when=rule["when"], topic=rule["topic"]))
    return tuple(routes)


def check_routes(routes: Sequence[Route], fields: Sequence[str]) -> None:
    """Raise :class:`RouteError` naming the first rule whose filter or topic is wrong."""
    for index, route in enumerate(routes):
        try:
            check_topic_name(route.topic)
            Expression(route.when, fields)
        except (RouteError, ExpressionError) as exc:
            raise RouteError(f"routes[{index}]: {exc}") from None


CompiledRoutes = tuple[tuple[Expression, str], ...]


@lru_cache(maxsize=256)
def compile_routes(routes: tuple[Route, ...], fields: tuple[str, ...]) -> CompiledRoutes:
    """Each rule's filter parsed once per (rules, fields); the agents call this per batch."""
    return tuple((Expression(route.when, fields), route.topic) for route in routes)


def matching_topics(routes: CompiledRoutes, record: dict[str, Any]) -> list[str]:
    """Targets whose filter matches ``record``, each once, in declaration order."""
    topics: list[str] = []
    for expression, topic in routes:
        if topic not in topics and expression.matches(record):
            topics.append(topic)
    return topics
