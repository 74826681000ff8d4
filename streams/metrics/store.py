"""Metric declarations: ``metrics.yaml`` and ``POST /v1/metrics`` into the declaration store.

The generic store (``schemas.declaration_store``) holds them in Redis with a version counter;
this adds what is particular to metrics (they are checked against the live streams, may not
take a stream's name) and the flow's follower, which compiles their filters once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from riverbed.core.topology import METRIC_DEFS_KEY, METRICS_APPLIED_KEY, METRICS_VERSION_KEY
from schemas.catalog import StreamSpec
from schemas.declaration_store import (
    DeclarationExists,
    DeclarationFollower,
    DeclarationNotFound,
    DeclarationStore,
    Kind,
    Stored,
    StoreKeys,
    read_declarations_file,
)
from schemas.expressions import Expression
from streams.metrics.definition import Metric, MetricError, parse_definition

log = logging.getLogger(__name__)


class MetricExists(DeclarationExists):
    title = "Metric exists"

    def __init__(self, name: str, source: str) -> None:
        super().__init__("metric", name, source)


class MetricNotFound(DeclarationNotFound):
    title = "No such metric"

    def __init__(self, name: str) -> None:
        super().__init__("metric", name)


StoredMetric = Stored[Metric]
METRIC_KEYS = StoreKeys(METRIC_DEFS_KEY, METRICS_VERSION_KEY, METRICS_APPLIED_KEY)


def to_public(stored: StoredMetric) -> dict[str, Any]:
    """A stored metric as the API shows it."""
    metric = stored.value
    return {
        **metric.definition,
        "source": stored.source,
        "generation": metric.generation,
        "created_at": stored.created_at,
        "outputs": [a.name for a in metric.aggregations],
    }


class MetricStore(DeclarationStore[Metric]):
    """Declared metrics: checked against the live streams when stored and when read."""

    def __init__(
        self,
        client: redis.Redis,
        streams: Callable[[], dict[str, StreamSpec]],
        default_lateness_ms: int,
    ) -> None:
        self.streams = streams
        self.default_lateness_ms = default_lateness_ms
        kind: Kind[Metric] = Kind(
            "metric",
            parse=self.parse,
            definition=lambda metric: metric.definition,
            name_of=lambda metric: metric.name,
            error=MetricError,
            not_found=MetricNotFound,
            exists=MetricExists,
        )
        super().__init__(client, METRIC_KEYS, kind)

    def parse(self, raw: Any, where: str = "") -> Metric:
        return parse_definition(raw, self.streams(), self.default_lateness_ms, where)

    def sync_file(self, path: Path) -> dict[str, list[str]]:
        """Make the stored file metrics equal ``metrics.yaml``'s; all-or-nothing on any error."""
        declared = read_declarations_file(path, "metrics", MetricError) if path.exists() else []
        return self.sync(declared, str(path), taken=self.streams(), taken_by="a stream")


ByStream = dict[str, list[tuple[Metric, Expression | None]]]


def by_stream(stored: dict[str, StoredMetric]) -> ByStream:
    """The live metrics per stream, with their filters compiled once."""
    index: ByStream = {}
    for entry in stored.values():
        metric = entry.value
        index.setdefault(metric.stream, []).append((metric, metric.compile_filter()))
    return index


class MetricFollower(DeclarationFollower[Metric, ByStream]):
    """The flow's view of the declared metrics: per stream, re-read when they change."""

    def __init__(self, store: MetricStore, interval: float = 1.0) -> None:
        super().__init__(store, by_stream, {}, interval)

    def live_generations(self) -> set[tuple[str, str]]:
        return {(m.name, m.generation) for ms in self.current.values() for m, _ in ms}
