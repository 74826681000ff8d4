"""Where metric declarations live: a Redis hash (AOF-persisted), fed by a YAML file and the API.

The file (``metrics.yaml`` in the data dir, or ``RIVERBED_METRICS_FILE``) is the source for the
metrics it names: the API bootstraps them at start and whenever the file changes; metrics
that disappear from the file are removed. ``POST /v1/metrics`` adds metrics of its own; it may
not overwrite or delete a file metric (edit the file instead), so neither source silently
undoes the other. A version counter lets the flow notice changes with one GET a second.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml

from riverbed.core.errors import Conflict, FieldProblem, NotFound, pointer, summarize
from riverbed.core.redis import as_text
from riverbed.core.topology import METRIC_DEFS_KEY, METRICS_APPLIED_KEY, METRICS_VERSION_KEY
from schemas.catalog import StreamSpec
from schemas.expressions import Expression
from streams.metrics.definition import Metric, MetricError, parse_definition

log = logging.getLogger(__name__)


class MetricExists(Conflict):
    title = "Metric exists"

    def __init__(self, name: str, source: str) -> None:
        super().__init__(f"{name!r} is already declared (source: {source}); delete it first")
        self.name, self.source = name, source

    def extra(self) -> dict[str, Any]:
        return {"metric": self.name}


class MetricNotFound(NotFound):
    title = "No such metric"

    def __init__(self, name: str) -> None:
        super().__init__(f"no declared metric {name!r}")
        self.name = name


class DeclaredInFile(Conflict):
    """The metric comes from the metrics file; the API may not change it."""

    title = "Declared in the metrics file"

    def __init__(self, name: str) -> None:
        super().__init__(f"{name!r} is declared in the metrics file; edit the file instead")
        self.name = name


@dataclass(frozen=True)
class StoredMetric:
    metric: Metric
    source: str  # "file" or "api"
    created_at: int

    def to_public(self) -> dict[str, Any]:
        return {
            **self.metric.definition,
            "source": self.source,
            "generation": self.metric.generation,
            "created_at": self.created_at,
            "outputs": [a.name for a in self.metric.aggregations],
        }


def read_metrics_file(path: Path) -> list[Any]:
    """The declarations in a YAML file: a list, or a mapping with a ``metrics`` list."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MetricError(f"{path}: {exc}") from exc
    if loaded is None:
        return []
    if isinstance(loaded, dict) and isinstance(loaded.get("metrics"), list):
        return list(loaded["metrics"])
    if isinstance(loaded, list):
        return loaded
    raise MetricError(f"{path}: expected a list under 'metrics:'")


class MetricStore:
    def __init__(
        self,
        client: redis.Redis,
        streams: Callable[[], dict[str, StreamSpec]],
        default_lateness_ms: int,
    ) -> None:
        self.client = client
        self.streams = streams
        self.default_lateness_ms = default_lateness_ms

    def parse(self, raw: Any, where: str = "") -> Metric:
        return parse_definition(raw, self.streams(), self.default_lateness_ms, where)

    def _stored(self, blob: bytes | str, streams: dict[str, StreamSpec]) -> StoredMetric | None:
        entry = json.loads(blob)
        try:
            metric = parse_definition(entry["definition"], streams, self.default_lateness_ms)
        except MetricError:
            return None  # its stream has gone (or changed under it)
        return StoredMetric(metric, entry["source"], entry["created_at"])

    def all(self) -> dict[str, StoredMetric]:
        """Every stored metric; one whose stream has gone is skipped rather than fatal."""
        streams = self.streams()
        out = {
            as_text(name): self._stored(blob, streams)
            for name, blob in sorted(self.client.hgetall(METRIC_DEFS_KEY).items())
        }
        return {name: stored for name, stored in out.items() if stored is not None}

    def get(self, name: str) -> StoredMetric:
        """One metric, reading and checking only its own declaration."""
        blob = self.client.hget(METRIC_DEFS_KEY, name)
        stored = None if blob is None else self._stored(blob, self.streams())
        if stored is None:
            raise MetricNotFound(name)
        return stored

    def version(self) -> int:
        return int(self.client.get(METRICS_VERSION_KEY) or 0)

    def applied(self) -> bool:
        """Whether the flow runs the current declarations (events from now on are counted)."""
        return int(self.client.get(METRICS_APPLIED_KEY) or -1) >= self.version()

    def _entry(self, metric: Metric, source: str) -> str:
        now = time.time_ns() // 1_000_000
        return json.dumps({"definition": metric.definition, "source": source, "created_at": now})

    def create(self, raw: Any) -> StoredMetric:
        """Add an API metric; :class:`MetricExists` if the name is taken (by either source)."""
        metric = self.parse(raw)
        entry = self._entry(metric, "api")
        if not self.client.hsetnx(METRIC_DEFS_KEY, metric.name, entry):
            existing = json.loads(self.client.hget(METRIC_DEFS_KEY, metric.name) or b"{}")
            raise MetricExists(metric.name, existing.get("source", "api"))
        self.client.incr(METRICS_VERSION_KEY)
        return self.get(metric.name)

    def delete(self, name: str) -> None:
        blob = self.client.hget(METRIC_DEFS_KEY, name)
        if blob is None:
            raise MetricNotFound(name)
        if json.loads(blob)["source"] == "file":
            raise DeclaredInFile(name)
        self.client.hdel(METRIC_DEFS_KEY, name)
        self.client.incr(METRICS_VERSION_KEY)

    def sync_file(self, path: Path) -> dict[str, list[str]]:
        """Make the stored file metrics equal the file's; all-or-nothing on any error."""
        declared = read_metrics_file(path) if path.exists() else []
        metrics: dict[str, Metric] = {}
        errors: list[FieldProblem] = []
        streams = self.streams()
        for index, raw in enumerate(declared):
            try:
                metric = self.parse(raw, where=pointer("metrics", index))
            except MetricError as exc:
                errors += exc.problems
                continue
            name_path = pointer("metrics", index, "name")
            if metric.name in streams:
                errors.append(FieldProblem(name_path, "is a stream's name; pick another"))
            if metric.name in metrics:
                errors.append(FieldProblem(name_path, "declared twice"))
            metrics[metric.name] = metric
        if errors:
            raise MetricError(errors, f"{path}: {summarize(errors)}")
        report: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
        stored = {
            as_text(name): json.loads(blob)
            for name, blob in self.client.hgetall(METRIC_DEFS_KEY).items()
        }
        pipe = self.client.pipeline(transaction=True)
        for name, metric in metrics.items():
            old = stored.get(name)
            if old is not None and old["source"] != "file":
                index = next(i for i, raw in enumerate(declared) if raw.get("name") == name)
                raise MetricError.at(
                    pointer("metrics", index, "name"),
                    f"{path}: {name!r} is already defined through the API",
                )
            if old is None or old["definition"] != metric.definition:
                report["changed" if old else "added"].append(name)
                pipe.hset(METRIC_DEFS_KEY, name, self._entry(metric, "file"))
        for name, old in stored.items():
            if old["source"] == "file" and name not in metrics:
                report["removed"].append(name)
                pipe.hdel(METRIC_DEFS_KEY, name)
        if any(report.values()):
            pipe.incr(METRICS_VERSION_KEY)
            pipe.execute()
        return report


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
                metric = stored.metric
                by_stream.setdefault(metric.stream, []).append((metric, metric.compile_filter()))
            self.by_stream, self._version = by_stream, version
            self.store.client.set(METRICS_APPLIED_KEY, version)
        return self.by_stream

    def live_generations(self) -> set[tuple[str, str]]:
        return {(m.name, m.generation) for ms in self.by_stream.values() for m, _ in ms}
