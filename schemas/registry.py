"""Schema ids that are identical on every process and stable across restarts.

Ids are allocated atomically in Redis (AOF-persisted) by a fingerprint of the schema's normalised
JSON, so the API, the Faust workers, the Bytewax flow and the sinks agree on what id 7 means
without talking to each other. Each process caches parsed schemas; ids never change meaning.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from typing import Any

import fastavro
import redis

PREFIX = "riverbed:registry"

# Returns the existing id for a fingerprint, or allocates the next one; atomic in Redis.
_GET_OR_CREATE = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return tonumber(existing) end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', KEYS[3], id, ARGV[2])
return id
"""


class SchemaNotFound(LookupError):
    """No schema is registered under that id."""


def fingerprint(schema: dict[str, Any]) -> str:
    """Normalised-JSON digest: unlike the Avro canonical form it keeps defaults and logical types,
    which change what a reader sees and so must give a new id."""
    return hashlib.sha256(
        json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


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


class SchemaRegistry:
    """Register and resolve schemas; thread-safe, caches everything it has seen."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._script = client.register_script(_GET_OR_CREATE)
        self._lock = threading.Lock()
        self._by_id: dict[int, dict[str, Any]] = {}
        self._parsed: dict[int, Any] = {}
        self._raw_parsed: dict[int, Any] = {}
        self._ids: dict[str, int] = {}

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Id of ``schema`` (allocating one if new), recorded as the latest version of subject."""
        fp = fingerprint(schema)
        with self._lock:
            if fp in self._ids:
                return self._ids[fp]
        text = json.dumps(schema, sort_keys=True)
        fastavro.parse_schema(copy.deepcopy(schema))  # reject invalid Avro before it gets an id
        schema_id = int(
            self._script(
                keys=[f"{PREFIX}:by_fingerprint", f"{PREFIX}:next_id", f"{PREFIX}:by_id"],
                args=[fp, text],
            )
        )
        versions_key = f"{PREFIX}:subject:{subject}"
        versions = [int(v) for v in self._redis.lrange(versions_key, 0, -1)]
        if schema_id not in versions:
            self._redis.rpush(versions_key, schema_id)
        with self._lock:
            self._ids[fp] = schema_id
            self._by_id[schema_id] = schema
        return schema_id

    def schema(self, schema_id: int) -> dict[str, Any]:
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
            hit = fastavro.parse_schema(copy.deepcopy(self.schema(schema_id)))
            with self._lock:
                self._parsed[schema_id] = hit
        return hit

    def raw_parsed(self, schema_id: int) -> Any:
        """Parsed schema without logical types: decodes timestamps as epoch integers."""
        with self._lock:
            hit = self._raw_parsed.get(schema_id)
        if hit is None:
            hit = fastavro.parse_schema(strip_logical_types(self.schema(schema_id)))
            with self._lock:
                self._raw_parsed[schema_id] = hit
        return hit

    def versions(self, subject: str) -> list[int]:
        return [int(v) for v in self._redis.lrange(f"{PREFIX}:subject:{subject}", 0, -1)]
