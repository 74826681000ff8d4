"""Live metric values in Redis: latest per metric, a bounded recent series, and a pub/sub feed.

Each update is applied by a Lua script that keeps only the highest version per window, so a
re-delivered or re-computed update never moves a value backwards, and publishes only what it
applied. Keys (all under ``riverbed:``):

- ``latest:{stream}`` hash, field ``{field}|{group}`` -> JSON of the newest window's update
- ``series:{stream}:{field}:{group}`` sorted set by window start, the last N windows
- channel ``live:metrics`` -> every applied update as JSON
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis
from confluent_kafka import Message

from schemas import codec
from schemas.registry import SchemaRegistry

LIVE_CHANNEL = "riverbed:live:metrics"

_UPSERT = """
local series, latest = KEYS[1], KEYS[2]
local member, update, start, version = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local current = redis.call('ZRANGEBYSCORE', series, start, start)
if #current > 0 then
  if tonumber(cjson.decode(current[1])['version']) >= version then return 0 end
  redis.call('ZREMRANGEBYSCORE', series, start, start)
end
redis.call('ZADD', series, start, update)
redis.call('ZREMRANGEBYRANK', series, 0, -(tonumber(ARGV[5]) + 1))
local newest = redis.call('HGET', latest, member)
if (not newest) or tonumber(cjson.decode(newest)['window_start']) <= start then
  redis.call('HSET', latest, member, update)
end
redis.call('PUBLISH', ARGV[6], update)
return 1
"""


def latest_key(stream: str) -> str:
    return f"riverbed:latest:{stream}"


def series_key(stream: str, field: str, group: str) -> str:
    return f"riverbed:series:{stream}:{field}:{group}"


def metric_json(update: dict[str, Any]) -> str:
    return json.dumps(update, separators=(",", ":"), sort_keys=True)


class RedisMetricsWriter:
    name = "redis"

    def __init__(self, client: redis.Redis, registry: SchemaRegistry, series_length: int) -> None:
        self.client = client
        self.registry = registry
        self.series_length = series_length
        self._upsert = client.register_script(_UPSERT)

    def write(self, messages: Sequence[Message]) -> None:
        self.apply([codec.decode(self.registry, m.value() or b"")[1] for m in messages])

    def apply(self, updates: Sequence[dict[str, Any]]) -> list[bool]:
        """Upsert decoded updates in one round trip; True for each one that was applied."""
        pipe = self.client.pipeline(transaction=False)
        for update in updates:
            stream, field, group = update["stream"], update["field"], update["group"]
            self._upsert(
                keys=[series_key(stream, field, group), latest_key(stream)],
                args=[
                    f"{field}|{group}",
                    metric_json(update),
                    update["window_start"],
                    update["version"],
                    self.series_length,
                    LIVE_CHANNEL,
                ],
                client=pipe,
            )
        return [bool(applied) for applied in pipe.execute()]
