"""Metric declarations: ``metrics.yaml`` and ``POST /v1/metrics`` into the declaration store.

The generic store (``schemas.declaration_store``) holds them in Redis with a version counter;
this adds what is particular to metrics (they are checked against the live streams, may not
take a stream's name) and the flow's follower, which compiles their filters once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from riverbed.core.topology import METRIC_DEFS_KEY, METRICS_APPLIED_KEY, METRICS_VERSION_KEY
from schemas.catalog import StreamSpec
from schemas.declaration_store import (
    DeclarationExists,
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


class MetricFollower:
    """The live metrics per stream, re-read when the version counter moves (checked at most
    every ``interval`` seconds), with their filters compiled once."""

    def __init__(self, store: MetricStore, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self._checked = 0.0
        self._version = -1
        self.by_stream: dict[str, list[tuple[Metric, Expression | None]]] = {}

    def refresh(self, force: bool = False) -> dict[str, list[tuple[Metric, Expression | None]]]:
        """The metrics per stream; on a Redis error the last known ones (the flow keeps
        computing them rather than crashing while Redis restarts)."""
        now = time.monotonic()
        if not force and now - self._checked < self.interval:
            return self.by_stream
        self._checked = now
        try:
            return self._reload(force)
        except redis.RedisError as exc:
            if force:
                raise
            log.warning("declared metrics: Redis unavailable, keeping %d: %s", self._count(), exc)
            return self.by_stream

    def _count(self) -> int:
        return sum(len(metrics) for metrics in self.by_stream.values())

    def _reload(self, force: bool) -> dict[str, list[tuple[Metric, Expression | None]]]:
        version = self.store.version()
        if version != self._version or force:
            by_stream: dict[str, list[tuple[Metric, Expression | None]]] = {}
            for stored in self.store.all().values():
                metric = stored.value
                by_stream.setdefault(metric.stream, []).append((metric, metric.compile_filter()))
            self.by_stream, self._version = by_stream, version
            self.store.mark_applied(version)
        return self.by_stream

    def live_generations(self) -> set[tuple[str, str]]:
        return {(m.name, m.generation) for ms in self.by_stream.values() for m, _ in ms}
