"""The pipeline's processes, in one table: what each runs, which consumer group it commits as, and
how many replicas ``riverbed up`` starts.

``riverbed run NAME`` dispatches through this table, ``riverbed up`` starts the components it
selects, the drain waits on the groups it names, each process beats under its name, and
``k8s/`` has one Deployment per row (a test holds them together). Adding a process means
adding a row here; nothing else lists them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from riverbed.core import topology
from riverbed.core.settings import Settings


def _one(settings: Settings) -> int:
    return 1


@dataclass(frozen=True)
class Component:
    """One kind of pipeline process. ``entry`` is ``module:function(settings)``, imported only
    when that process starts, so ``riverbed up`` does not load Faust or Bytewax itself."""

    name: str
    entry: str
    summary: str
    group: str | None = None  # the consumer group it commits as, if any
    replicas: Callable[[Settings], int] = _one

    def load(self) -> Callable[[Settings], None]:
        module, _, function = self.entry.partition(":")
        run: Callable[[Settings], None] = getattr(importlib.import_module(module), function)
        return run


COMPONENTS: tuple[Component, ...] = (
    Component(
        "api",
        "api.app:run",
        "HTTP ingest, queries, SSE",
    ),
    Component(
        "sql",
        "api.sql_gateway:run",
        "ClickHouse's HTTP interface for analysts: API keys, the read-only fence, limits",
    ),
    Component(
        "agents",
        "streams.worker:run",
        "Faust agents: events.* -> validate, enrich, dedup, route -> clean.* / dlq.*",
        group=topology.AGENTS_GROUP,
        replicas=lambda settings: settings.agent_workers,
    ),
    Component(
        "flow",
        "streams.flow.process:run",
        "Bytewax dataflow: clean.* -> built-in and declared window metrics",
    ),
    Component(
        "sink-redis",
        "sinks.service:run_redis",
        "metrics and metric_results -> Redis live values, series, pub/sub",
        group=topology.REDIS_SINK_GROUP,
    ),
    Component(
        "sink-clickhouse",
        "sinks.service:run_clickhouse",
        "clean.*, dlq.*, metrics, metric_results -> ClickHouse",
        group=topology.CLICKHOUSE_SINK_GROUP,
    ),
)

NAMES = tuple(component.name for component in COMPONENTS)


def component(name: str) -> Component:
    """The row for ``name``; ``KeyError`` names the known components."""
    for row in COMPONENTS:
        if row.name == name:
            return row
    raise KeyError(f"no component {name!r}; known: {', '.join(NAMES)}")


def instances(settings: Settings) -> list[tuple[str, int]]:
    """``(component, instance)`` for every process ``riverbed up`` starts, in start order."""
    return [
        (row.name, instance) for row in COMPONENTS for instance in range(row.replicas(settings))
    ]
