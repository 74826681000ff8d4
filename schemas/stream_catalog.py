"""Streams that can be created and evolved at run time, shared by every process through Redis.

Definitions live in one Redis hash next to a version counter; each process keeps a cached copy
and re-reads it when the counter moves (checked at most every ``max_age`` seconds, and at once
when asked for a stream it does not know). Schemas go through the registry, so creating or
evolving a stream is compatibility-checked like any registration.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from riverbed.core.errors import Conflict
from riverbed.core.redis import as_text
from riverbed.core.topology import (
    AUDIT_TOPIC,
    METRIC_RESULTS_TOPIC,
    METRICS_TOPIC,
    STREAM_IDS_KEY,
    STREAM_SEEDED_KEY,
    STREAMS_CLOSING_KEY,
    STREAMS_KEY,
    STREAMS_RETIRED_KEY,
    STREAMS_VERSION_KEY,
    clean_topic,
    dlq_topic,
    events_topic,
)
from schemas.catalog import StreamNotFound, StreamSpec, check_spec
from schemas.codec import StreamSchemaIds, subject
from schemas.registry import SchemaRegistry, fingerprint
from schemas.system import (
    AUDIT_SCHEMA,
    DEAD_LETTER_SCHEMA,
    METRIC_RESULT_SCHEMA,
    METRIC_UPDATE_SCHEMA,
)

log = logging.getLogger(__name__)

PIPELINE_SUBJECT = re.compile(
    r"^(events|clean|dlq)\..+-value$|^(metrics|metric_results|audit)-value$"
)
SYSTEM_FIELD_NAMES = ("event_id", "ingested_at", "event_time", "processed_at")


class StreamExists(Conflict):
    """A stream of that name is already declared."""

    title = "Stream exists"

    def __init__(self, stream: str) -> None:
        super().__init__(f"stream {stream} already exists")
        self.stream = stream


def spec_to_json(spec: StreamSpec) -> str:
    data = dataclasses.asdict(spec)
    data.pop("field_names", None)
    return json.dumps(data, sort_keys=True)


def spec_from_json(text: str | bytes) -> StreamSpec:
    data = json.loads(text)
    data["field_names"] = tuple(f["name"] for f in data["schema"]["fields"])
    return StreamSpec(**data)


def user_schema(topic_schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The producer-facing schema inside an ``events.*`` schema (system fields removed)."""
    schema = dict(topic_schema)
    schema["fields"] = [f for f in topic_schema["fields"] if f["name"] not in SYSTEM_FIELD_NAMES]
    schema["name"] = name
    return schema


class StreamClosing(Conflict):
    """The stream is being deleted: it takes no more events."""

    title = "Stream being deleted"

    def __init__(self, stream: str) -> None:
        super().__init__(f"stream {stream} is being deleted and takes no more events")
        self.stream = stream


class StreamDeclaredInFile(Conflict):
    """A stream of ``streams.toml`` is deleted there, not over HTTP (a restart would bring it
    back)."""

    title = "Declared in streams.toml"

    def __init__(self, stream: str) -> None:
        super().__init__(
            f"stream {stream} is declared in streams.toml; remove it there (with its .avsc)"
        )
        self.stream = stream


@dataclass(frozen=True)
class CatalogSnapshot:
    """One consistent reading of the catalog; replaced whole, never changed."""

    version: int = -1
    specs: Mapping[str, StreamSpec] = field(default_factory=dict)
    ids: Mapping[str, StreamSchemaIds] = field(default_factory=dict)
    known_ids: Mapping[str, frozenset[int]] = field(default_factory=dict)
    closing: frozenset[str] = frozenset()
    retired: frozenset[str] = frozenset()  # deleted streams whose topics are kept


class StreamCatalog:
    """The live set of streams; thread-safe.

    Readers see an immutable :class:`CatalogSnapshot`. By default a read re-checks the shared
    version when the snapshot is older than ``max_age`` (one Redis GET). After :meth:`follow`,
    a daemon thread refreshes the snapshot instead and reads never do I/O: what an asyncio
    server needs, where a Redis round trip in a handler would stall every connection (and an
    unknown stream name would be a way to force one per request).
    """

    def __init__(self, client: redis.Redis, registry: SchemaRegistry, max_age: float = 1.0) -> None:
        self.redis = client
        self.registry = registry
        self.max_age = max_age
        self._snapshot = CatalogSnapshot()
        self._checked = 0.0
        self._following = False
        self._stop = threading.Event()
        self.metrics_id = registry.register(subject(METRICS_TOPIC), METRIC_UPDATE_SCHEMA)
        self.results_id = registry.register(subject(METRIC_RESULTS_TOPIC), METRIC_RESULT_SCHEMA)
        self.audit_id = registry.register(subject(AUDIT_TOPIC), AUDIT_SCHEMA)

    # ---- reading ----------------------------------------------------------------------------

    def follow(self, interval: float = 0.5) -> None:
        """Refresh from a daemon thread every ``interval`` seconds; reads stop doing I/O."""
        self.refresh(force=True)
        self._following = True
        threading.Thread(
            target=self._follow, args=(interval,), name="catalog-follower", daemon=True
        ).start()

    def _follow(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh(force=True)
            except redis.RedisError as exc:  # keep serving the last snapshot; try again
                log.warning("stream catalog refresh failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()

    def _maybe_refresh(self, force: bool = False) -> bool:
        """A read's refresh: none while following (the follower keeps the snapshot fresh)."""
        return False if self._following else self.refresh(force)

    def refresh(self, force: bool = False) -> bool:
        """Re-read definitions if the shared version moved; True if anything changed."""
        now = time.monotonic()
        if not force and now - self._checked < self.max_age:
            return False
        self._checked = now
        version = int(self.redis.get(STREAMS_VERSION_KEY) or 0)
        if version == self._snapshot.version:
            return False
        specs = {as_text(k): spec_from_json(v) for k, v in self.redis.hgetall(STREAMS_KEY).items()}
        stored_ids = {
            as_text(k): json.loads(v) for k, v in self.redis.hgetall(STREAM_IDS_KEY).items()
        }
        ids = {name: StreamSchemaIds(**stored_ids[name]) for name in specs if name in stored_ids}
        specs = {name: spec for name, spec in specs.items() if name in ids}
        known = {
            name: frozenset(
                {
                    *self.registry.subject_ids(subject(events_topic(name))),
                    *self.registry.subject_ids(subject(clean_topic(name))),
                }
            )
            for name in specs
        }
        closing = frozenset(as_text(n) for n in self.redis.smembers(STREAMS_CLOSING_KEY))
        retired = frozenset(as_text(n) for n in self.redis.smembers(STREAMS_RETIRED_KEY))
        self._snapshot = CatalogSnapshot(version, specs, ids, known, closing & set(specs), retired)
        return True

    def snapshot(self) -> CatalogSnapshot:
        self._maybe_refresh()
        return self._snapshot

    def get(self, name: str) -> StreamSpec:
        spec = self.snapshot().specs.get(name)
        if spec is None and self._maybe_refresh(force=True):
            spec = self._snapshot.specs.get(name)
        if spec is None:
            raise StreamNotFound(name)
        return spec

    def ids(self, name: str) -> StreamSchemaIds:
        self.get(name)
        return self._snapshot.ids[name]

    def reader_ids(self, name: str, writer_id: int) -> StreamSchemaIds:
        """Latest ids to resolve a record written with ``writer_id`` to.

        A writer id this process has not seen means the stream evolved since the last refresh;
        resolving it to the cached (older) reader would silently drop the new fields, so the
        catalog is re-read first.
        """
        self.get(name)
        if writer_id not in self._snapshot.known_ids.get(name, frozenset()):
            self.refresh(force=True)  # I/O even when following: sinks call this from a thread
        return self._snapshot.ids[name]

    def check_open(self, name: str) -> None:
        """Raise :class:`StreamClosing` for a stream being deleted (ingest calls this)."""
        if name in self.snapshot().closing:
            raise StreamClosing(name)

    def specs(self) -> dict[str, StreamSpec]:
        return dict(self.snapshot().specs)

    def names(self) -> list[str]:
        return sorted(self.specs())

    def is_retired(self, name: str) -> bool:
        """Was ``name`` deleted (and not created again since)?"""
        snapshot = self.snapshot()
        return name in snapshot.retired and name not in snapshot.specs

    def topic_streams(self) -> list[str]:
        """Streams whose topics exist: the live ones and the deleted ones (their topics are
        kept). The flow reads the clean topic of each, so its input, and with it the
        partitions its recovery snapshots are keyed by, never shrinks."""
        snapshot = self.snapshot()
        return sorted(set(snapshot.specs) | snapshot.retired)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.specs()

    def ingest_version(self, name: str, version: int | str) -> tuple[int, dict[str, Any]]:
        """(schema id, producer-facing schema) of a registered version of the stream."""
        found = self.registry.version(subject(events_topic(name)), version)
        return found.id, user_schema(found.schema, self.get(name).schema["name"])

    # ---- writing ------------------------------------------------------------------------------

    def bootstrap(self, declared: dict[str, StreamSpec]) -> None:
        """Create declared streams that are missing; evolve one only when its declaration in
        ``streams.toml``/``.avsc`` changed since it was last applied, so schema changes made
        at run time survive a restart.

        Raises :class:`schemas.registry.SchemaIncompatible` when a changed ``.avsc`` breaks
        compatibility, rather than starting with a schema its topic cannot carry.
        """
        for name, spec in declared.items():
            declared_fp = fingerprint(spec_to_json(spec))
            seeded = self.redis.hget(STREAM_SEEDED_KEY, name)
            if not self.redis.hexists(STREAMS_KEY, name):
                self._store(spec, create=True)
            elif seeded is not None and as_text(seeded) != declared_fp:
                self._store(spec, create=False)
            self.redis.hset(STREAM_SEEDED_KEY, name, declared_fp)
        self.refresh(force=True)

    def create(self, spec: StreamSpec) -> StreamSpec:
        check_spec(spec, f"stream {spec.name!r}")
        self._store(spec, create=True)
        self.refresh(force=True)
        return self.get(spec.name)

    def evolve(self, name: str, schema: dict[str, Any]) -> StreamSpec:
        """New producer-facing schema for an existing stream, compatibility-checked."""
        spec = dataclasses.replace(
            self.get(name),
            schema=schema,
            field_names=tuple(
                str(f.get("name")) for f in schema.get("fields", []) if isinstance(f, dict)
            ),
        )
        check_spec(spec, f"stream {name!r}")
        self._store(spec, create=False)
        self.refresh(force=True)
        return self.get(name)

    def close(self, name: str) -> StreamSpec:
        """First step of deleting a stream: it takes no more events, and the agents and sinks
        go on with what it holds. Refuses a stream declared in ``streams.toml``."""
        spec = self.get(name)
        if self.redis.hexists(STREAM_SEEDED_KEY, name):
            raise StreamDeclaredInFile(name)
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(STREAMS_CLOSING_KEY, name)
        pipe.incr(STREAMS_VERSION_KEY)
        pipe.execute()
        self.refresh(force=True)
        return spec

    def remove(self, name: str) -> list[str]:
        """Last step of deleting a stream: forget it, and delete (softly: ids keep resolving)
        every version of its subjects, so a new stream of that name starts a new history.
        Returns the subjects."""
        subjects = [subject(t(name)) for t in (events_topic, clean_topic, dlq_topic)]
        with self.registry.lock(f"stream:{name}"):
            for name_of_subject in subjects:
                for version in self.registry.versions(name_of_subject):
                    self.registry.delete_version(name_of_subject, version)
            pipe = self.redis.pipeline(transaction=True)
            pipe.hdel(STREAMS_KEY, name)
            pipe.hdel(STREAM_IDS_KEY, name)
            pipe.srem(STREAMS_CLOSING_KEY, name)
            pipe.sadd(STREAMS_RETIRED_KEY, name)
            pipe.incr(STREAMS_VERSION_KEY)
            pipe.execute()
        self.refresh(force=True)
        return subjects

    def _store(self, spec: StreamSpec, create: bool) -> None:
        """Register the stream's schemas and store it with the ids it writes with, under a
        per-stream lock so that two concurrent creations cannot interleave.

        Consumers read every record with the latest schema, so whatever level the subject
        is configured with, a stream's schema must also be able to read all earlier versions
        (BACKWARD_TRANSITIVE); otherwise old records would fail to resolve downstream.
        """
        with self.registry.lock(f"stream:{spec.name}"):
            exists = self.redis.hexists(STREAMS_KEY, spec.name)
            if create and exists:
                raise StreamExists(spec.name)
            if not create and not exists:
                raise StreamNotFound(spec.name)
            ids = StreamSchemaIds(
                ingest=self.registry.register(
                    subject(events_topic(spec.name)),
                    spec.ingest_schema,
                    also="BACKWARD_TRANSITIVE",
                    as_latest=True,
                ),
                clean=self.registry.register(
                    subject(clean_topic(spec.name)),
                    spec.clean_schema,
                    also="BACKWARD_TRANSITIVE",
                    as_latest=True,
                ),
                dead_letter=self.registry.register(
                    subject(dlq_topic(spec.name)), DEAD_LETTER_SCHEMA
                ),
            )
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(STREAMS_KEY, spec.name, spec_to_json(spec))
            pipe.hset(STREAM_IDS_KEY, spec.name, json.dumps(dataclasses.asdict(ids)))
            pipe.incr(STREAMS_VERSION_KEY)
            pipe.execute()
