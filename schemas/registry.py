"""Schema ids that are identical on every process and stable across restarts.

Ids are allocated atomically in Redis (AOF-persisted) by a fingerprint of the schema's normalised
JSON, so the API, the Faust workers, the Bytewax flow and the sinks agree on what id 7 means
without talking to each other. Subjects hold ordered versions (soft-deletable) and a
compatibility level; registering a new version is checked against it under a per-subject lock.
Every change is also appended to the ``_schemas`` log (see :mod:`schemas.schema_log`), as the
Confluent registry does, so the state can be rebuilt from Kafka.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import fastavro
import redis

from riverbed.core.redis import as_text
from riverbed.core.topology import REGISTRY_PREFIX as PREFIX
from schemas import compatibility
from schemas.compatibility import MODES, Incompatibility
from schemas.registry_errors import (
    InvalidCompatibilityLevel,
    InvalidSchema,
    RegistryError,
    SchemaIncompatible,
    SchemaNotFound,
    SubjectNotFound,
    VersionNotFound,
)

GLOBAL = "__global__"
DEFAULT_LEVEL = "BACKWARD"

# Returns the existing id for a fingerprint, or allocates the next one; atomic in Redis.
_GET_OR_CREATE = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return tonumber(existing) end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', KEYS[3], id, ARGV[2])
return id
"""


class SchemaLogWriter(Protocol):
    def append(self, key: dict[str, Any], value: dict[str, Any] | None) -> None: ...


@dataclass(frozen=True)
class SubjectVersion:
    subject: str
    version: int
    id: int
    schema: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "version": self.version,
            "id": self.id,
            "schema": json.dumps(self.schema),
        }


def fingerprint(schema: Any) -> str:
    """Normalised-JSON digest: unlike the Avro canonical form it keeps defaults and logical types,
    which change what a reader sees and so must give a new id."""
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def strip_logical_types(schema: Any) -> Any:
    """The same schema without ``logicalType`` annotations.

    The binary encoding is identical, so decoding with this yields raw ints for timestamps,
    which is what every consumer in the pipeline wants (and faster than building datetimes).
    """
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    if isinstance(schema, dict):
        out = {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
        if schema.get("logicalType") == "decimal":
            out.pop("precision", None)
            out.pop("scale", None)
        return out
    return schema


def check(level: str, schema: Any, previous: list[Any]) -> list[Incompatibility]:
    """:func:`schemas.compatibility.check`, with its schema errors as the registry's 422."""
    try:
        return compatibility.check(level, schema, previous)
    except compatibility.InvalidSchema as exc:
        raise InvalidSchema(f"not a valid Avro schema: {exc}") from exc


def parse_avro(schema: Any) -> Any:
    """fastavro-parse, turning its assorted errors into :class:`InvalidSchema`."""
    try:
        return fastavro.parse_schema(copy.deepcopy(schema))
    except Exception as exc:  # fastavro raises SchemaParseException, ValueError, KeyError...
        raise InvalidSchema(f"not a valid Avro schema: {exc}") from exc


class SchemaRegistry:
    """Register and resolve schemas; thread-safe, caches what never changes (id -> schema)."""

    def __init__(self, client: redis.Redis, log: SchemaLogWriter | None = None) -> None:
        self._redis = client
        self._log = log
        self._script = client.register_script(_GET_OR_CREATE)
        self._lock = threading.Lock()
        self._by_id: dict[int, Any] = {}
        self._parsed: dict[int, Any] = {}
        self._raw_parsed: dict[int, Any] = {}
        self._resolved: dict[tuple[int, int], tuple[Any, Any]] = {}
        self._ids_by_fingerprint: dict[str, int] = {}

    # ---- ids ----------------------------------------------------------------------------

    def id_for(self, schema: Any) -> int:
        """The id of ``schema``, allocating one if it was never seen (no subject involved)."""
        fp = fingerprint(schema)
        with self._lock:
            known = self._ids_by_fingerprint.get(fp)
        if known is not None:
            return known
        parse_avro(schema)
        schema_id = int(
            self._script(
                keys=[
                    f"{PREFIX}:by_fingerprint",
                    f"{PREFIX}:next_id",
                    f"{PREFIX}:by_id",
                ],
                args=[fp, json.dumps(schema, sort_keys=True)],
            )
        )
        with self._lock:
            self._by_id.setdefault(schema_id, schema)
            self._ids_by_fingerprint[fp] = schema_id
        return schema_id

    def schema(self, schema_id: int) -> Any:
        with self._lock:
            cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        text = self._redis.hget(f"{PREFIX}:by_id", str(schema_id))
        if text is None:
            raise SchemaNotFound(f"no schema with id {schema_id}")
        schema = json.loads(text)
        with self._lock:
            self._by_id[schema_id] = schema
        return schema

    def parsed(self, schema_id: int) -> Any:
        """fastavro-parsed schema for writing with logical types (accepts ints and datetimes)."""
        with self._lock:
            hit = self._parsed.get(schema_id)
        if hit is None:
            hit = parse_avro(self.schema(schema_id))
            with self._lock:
                self._parsed[schema_id] = hit
        return hit

    def raw_parsed(self, schema_id: int) -> Any:
        """Parsed schema without logical types: decodes timestamps as epoch integers."""
        with self._lock:
            hit = self._raw_parsed.get(schema_id)
        if hit is None:
            hit = parse_avro(strip_logical_types(self.schema(schema_id)))
            with self._lock:
                self._raw_parsed[schema_id] = hit
        return hit

    # ---- subjects and versions ------------------------------------------------------------

    def subjects(self, include_deleted: bool = False) -> list[str]:
        names = sorted(as_text(s) for s in self._redis.smembers(f"{PREFIX}:subjects"))
        if include_deleted:
            return names
        return [s for s in names if self.versions(s)]

    def _ids(self, subject: str) -> list[int]:
        return [int(v) for v in self._redis.lrange(f"{PREFIX}:subject:{subject}", 0, -1)]

    def _deleted(self, subject: str) -> set[int]:
        return {int(v) for v in self._redis.smembers(f"{PREFIX}:deleted:{subject}")}

    def subject_ids(self, subject: str) -> list[int]:
        """Schema ids of every version of the subject, deleted ones included."""
        return self._ids(subject)

    def versions(self, subject: str, include_deleted: bool = False) -> list[int]:
        """Version numbers (1-based) of the subject, oldest first."""
        deleted = set() if include_deleted else self._deleted(subject)
        return [v for v in range(1, len(self._ids(subject)) + 1) if v not in deleted]

    def version(self, subject: str, version: int | str) -> SubjectVersion:
        """``version`` is a number, ``latest`` or ``-1``; raises Subject/VersionNotFound."""
        live = self.versions(subject)
        if not self._ids(subject):
            raise SubjectNotFound(f"subject {subject!r} not found")
        if version in ("latest", "-1", -1):
            if not live:
                raise VersionNotFound(f"subject {subject!r} has no live versions")
            number = live[-1]
        else:
            try:
                number = int(version)
            except ValueError:
                raise VersionNotFound(f"version {version!r} is not a number or 'latest'") from None
            if number not in live:
                raise VersionNotFound(f"subject {subject!r} has no version {number}")
        schema_id = self._ids(subject)[number - 1]
        return SubjectVersion(subject, number, schema_id, self.schema(schema_id))

    def latest_id(self, subject: str) -> int:
        return self.version(subject, "latest").id

    def lookup(self, subject: str, schema: Any) -> SubjectVersion:
        """The live version of ``subject`` holding exactly ``schema``."""
        schema_id = self.id_for(schema)
        for number in reversed(self.versions(subject)):
            if self._ids(subject)[number - 1] == schema_id:
                return SubjectVersion(subject, number, schema_id, schema)
        if not self._ids(subject):
            raise SubjectNotFound(f"subject {subject!r} not found")
        raise SchemaNotFound(f"schema not registered under subject {subject!r}")

    def register(
        self, subject: str, schema: Any, also: str | None = None, *, as_latest: bool = False
    ) -> int:
        """Id of ``schema`` as a version of ``subject`` (the newest one with ``as_latest``);
        idempotent.

        Raises :class:`SchemaIncompatible` if it breaks the subject's compatibility level, or
        the level ``also`` that the caller requires on top of it.
        """
        return self.register_version(subject, schema, also, as_latest=as_latest).id

    def register_version(
        self, subject: str, schema: Any, also: str | None = None, *, as_latest: bool = False
    ) -> SubjectVersion:
        """Confluent's ``POST /subjects/{s}/versions``: a schema the subject already holds
        answers with that version, whichever it is.

        ``as_latest`` is for a stream going back to an earlier shape: the schema must then be
        the subject's *latest* version, as the stream writes and reads with it, so an earlier
        match is appended again as a new version under the same id (what Confluent does for a
        schema registered again after its version was deleted). Without it the registry's
        latest would keep a field the stream no longer has.
        """
        parse_avro(schema)
        with self.lock(subject):
            try:
                found = self.lookup(subject, schema)
                if not as_latest or found.version == self.versions(subject)[-1]:
                    return found
            except (SubjectNotFound, SchemaNotFound):
                pass
            previous = [self.version(subject, v).schema for v in self.versions(subject)]
            for level in (self.compatibility(subject), also):
                problems = check(level, schema, previous) if previous and level else []
                if problems:
                    raise SchemaIncompatible(subject, level or "", problems)
            schema_id = self.id_for(schema)
            self._redis.sadd(f"{PREFIX}:subjects", subject)
            number = self._redis.rpush(f"{PREFIX}:subject:{subject}", schema_id)
            registered = SubjectVersion(subject, int(number), schema_id, schema)
            self._append_log(registered, deleted=False)
            return registered

    def delete_version(self, subject: str, version: int | str) -> int:
        """Soft delete: the id keeps resolving (old records stay readable), the version is gone."""
        with self.lock(subject):
            found = self.version(subject, version)
            self._redis.sadd(f"{PREFIX}:deleted:{subject}", found.version)
            self._append_log(found, deleted=True)
            return found.version

    def check_against(
        self, subject: str, schema: Any, version: int | str = "latest"
    ) -> list[Incompatibility]:
        """Problems ``schema`` would have against one version (or, for TRANSITIVE levels and
        ``latest``, the history) under the subject's level."""
        parse_avro(schema)
        level = self.compatibility(subject)
        if not self.versions(subject):
            return []
        if version in ("latest", "-1", -1) and level.endswith("_TRANSITIVE"):
            previous = [self.version(subject, v).schema for v in self.versions(subject)]
        else:
            previous = [self.version(subject, version).schema]
        return check(level, schema, previous)

    # ---- configuration ----------------------------------------------------------------------

    def compatibility(self, subject: str | None = None) -> str:
        config = f"{PREFIX}:config"
        if subject is not None:
            level = self._redis.hget(config, subject)
            if level is not None:
                return as_text(level)
        level = self._redis.hget(config, GLOBAL)
        return as_text(level) if level is not None else DEFAULT_LEVEL

    def subject_compatibility(self, subject: str) -> str | None:
        level = self._redis.hget(f"{PREFIX}:config", subject)
        return as_text(level) if level is not None else None

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        if level not in MODES:
            raise InvalidCompatibilityLevel(f"{level!r} is not one of {', '.join(MODES)}")
        self._redis.hset(f"{PREFIX}:config", subject or GLOBAL, level)
        if self._log is not None:
            self._log.append(
                {"keytype": "CONFIG", "subject": subject, "magic": 0}, {"compatibilityLevel": level}
            )
        return level

    # ---- decoding with resolution -------------------------------------------------------------

    def resolving(self, writer_id: int, reader_id: int) -> tuple[Any, Any]:
        """Raw parsed (writer, reader) pair for fastavro's writer -> reader resolution."""
        key = (writer_id, reader_id)
        with self._lock:
            hit = self._resolved.get(key)
        if hit is None:
            hit = (self.raw_parsed(writer_id), self.raw_parsed(reader_id))
            with self._lock:
                self._resolved[key] = hit
        return hit

    # ---- internals ------------------------------------------------------------------------

    @contextmanager
    def lock(self, subject: str, timeout: float = 60.0) -> Iterator[None]:
        """A Redis lock: registrations to one subject are serialised across processes. Its TTL
        outlasts the ``_schemas`` append (which may wait 30 s for the broker)."""
        key = f"{PREFIX}:lock:{subject}"
        token = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while not self._redis.set(key, token, nx=True, px=int(timeout * 1000)):
            if time.monotonic() > deadline:
                raise RegistryError(f"subject {subject!r} is locked by another registration")
            time.sleep(0.01)
        try:
            yield
        finally:
            if self._redis.get(key) == token.encode():
                self._redis.delete(key)

    def _append_log(self, version: SubjectVersion, deleted: bool) -> None:
        if self._log is None:
            return
        self._log.append(
            {
                "keytype": "SCHEMA",
                "subject": version.subject,
                "version": version.version,
                "magic": 1,
            },
            {
                "subject": version.subject,
                "version": version.version,
                "id": version.id,
                "schema": json.dumps(version.schema),
                "deleted": deleted,
            },
        )

    def restore(self, records: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> int:
        """Rebuild Redis state from ``_schemas`` log records (oldest first); returns how many."""
        applied = 0
        for key, value in records:
            if value is None:
                continue
            if key.get("keytype") == "CONFIG":
                self._redis.hset(
                    f"{PREFIX}:config",
                    key.get("subject") or GLOBAL,
                    value["compatibilityLevel"],
                )
            elif key.get("keytype") == "SCHEMA":
                subject, number, schema_id = value["subject"], value["version"], value["id"]
                schema = json.loads(value["schema"])
                self._redis.hset(f"{PREFIX}:by_id", schema_id, json.dumps(schema, sort_keys=True))
                self._redis.hset(f"{PREFIX}:by_fingerprint", fingerprint(schema), schema_id)
                current = int(self._redis.get(f"{PREFIX}:next_id") or 0)
                if schema_id > current:
                    self._redis.set(f"{PREFIX}:next_id", schema_id)
                self._redis.sadd(f"{PREFIX}:subjects", subject)
                length = self._redis.llen(f"{PREFIX}:subject:{subject}")
                if number == length + 1:
                    self._redis.rpush(f"{PREFIX}:subject:{subject}", schema_id)
                if value.get("deleted"):
                    self._redis.sadd(f"{PREFIX}:deleted:{subject}", number)
            applied += 1
        return applied

    def export(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every subject version and config as ``_schemas`` log records, oldest first."""
        records: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for subject in self.subjects(include_deleted=True):
            deleted = self._deleted(subject)
            for number, schema_id in enumerate(self._ids(subject), start=1):
                records.append(
                    (
                        {"keytype": "SCHEMA", "subject": subject, "version": number, "magic": 1},
                        {
                            "subject": subject,
                            "version": number,
                            "id": schema_id,
                            "schema": json.dumps(self.schema(schema_id)),
                            "deleted": number in deleted,
                        },
                    )
                )
        for name, level in self._redis.hgetall(f"{PREFIX}:config").items():
            subject = as_text(name)
            records.append(
                (
                    {
                        "keytype": "CONFIG",
                        "subject": None if subject == GLOBAL else subject,
                        "magic": 0,
                    },
                    {"compatibilityLevel": as_text(level)},
                )
            )
        return records

    def is_empty(self) -> bool:
        return not self._redis.exists(f"{PREFIX}:next_id")
