"""Live metric values in Redis: latest per metric, a bounded recent series, and a live log.

Each update is applied by a Lua script that ranks a window's updates as ClickHouse does
(``riverbed.core.window_versions``): running values by version, any final above them, finals by
the events they count, a retraction above all. So a re-delivered or re-computed update never
moves a value backwards, and the script logs only what it applied. Keys (all under ``riverbed:``):

- ``latest:{stream}`` hash, field ``{field}|{group}`` -> JSON of the newest window's update
- ``series:{stream}:{field}:{group}`` sorted set by window start, the last N windows
- stream ``live:metrics`` -> every applied update as JSON, the last ``history`` of them

Declared metrics (``metric_results``) get the same shape under their metric name:
``mlatest:{metric}`` (field: group key), ``mseries:{metric}:{group key}`` and the stream
``live:metric_results``. A retracted session window is removed rather than stored.

The live log is a Redis Stream, not a pub/sub channel: its entry ids are the ids of the SSE
messages (``api.live.hub``), and a client that reconnects with ``Last-Event-ID`` is replayed
exactly what it missed, from the same log, as long as the log still holds it. Written in the
same script as the values, it holds every applied update and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from confluent_kafka import Message

from riverbed.core.topology import (
    LIVE_CHANNEL,
    METRIC_RESULTS_TOPIC,
    RESULTS_CHANNEL,
    latest_key,
    results_latest_key,
    results_series_key,
    series_key,
)
from schemas import codec
from schemas.registry import SchemaRegistry

_UPSERT = """
local series, latest, log = KEYS[1], KEYS[2], KEYS[3]
local member, update, start, version = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local final, count = ARGV[9] == '1', tonumber(ARGV[10])
local current = redis.call('ZRANGEBYSCORE', series, start, start)
if #current > 0 then
  local stored = cjson.decode(current[1])
  -- The ranking of riverbed.core.window_versions: a retraction replaces anything; a final
  -- replaces a running value, and a final only one with fewer events (or as many, older).
  if ARGV[7] ~= '1' then
    if stored['final'] == true then
      if not final then return 0 end
      local stored_count = tonumber(stored['count'])
      if count < stored_count then return 0 end
      if count == stored_count and tonumber(stored['version']) >= version then return 0 end
    elseif (not final) and tonumber(stored['version']) >= version then
      return 0
    end
  end
  redis.call('ZREMRANGEBYSCORE', series, start, start)
end
if ARGV[7] == '1' then
  local newest = redis.call('HGET', latest, member)
  if newest and tonumber(cjson.decode(newest)['window_start']) == start then
    redis.call('HDEL', latest, member)
  end
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[6], '*', 'u', update)
  return 1
end
redis.call('ZADD', series, start, update)
redis.call('ZREMRANGEBYRANK', series, 0, -(tonumber(ARGV[5]) + 1))
local newest = redis.call('HGET', latest, member)
if newest then newest = cjson.decode(newest) end
-- A redefined metric (new generation) replaces the old one's latest even if its window is older.
if (not newest) or (newest['generation'] or '') ~= ARGV[8]
    or tonumber(newest['window_start']) <= start then
  redis.call('HSET', latest, member, update)
end
redis.call('XADD', log, 'MAXLEN', '~', ARGV[6], '*', 'u', update)
return 1
"""


def clear_results(client: redis.Redis, metric: str) -> None:
    """Forget a declared metric's live values (deleted, or redefined with new windows)."""
    keys = [results_latest_key(metric), *client.scan_iter(match=results_series_key(metric, "*"))]
    client.delete(*keys)


def metric_json(update: dict[str, Any]) -> str:
    return json.dumps(update, separators=(",", ":"), sort_keys=True)


class RedisMetricsWriter:
    name = "redis"

    def __init__(
        self,
        client: redis.Redis,
        registry: SchemaRegistry,
        series_length: int,
        history: int = 50_000,
    ) -> None:
        self.client = client
        self.registry = registry
        self.series_length = series_length
        self.history = history  # entries each live log keeps, about (trimmed in whole nodes)
        self._upsert = client.register_script(_UPSERT)

    def write(self, messages: Sequence[Message]) -> None:
        updates: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for message in messages:
            record = codec.decode(self.registry, message.value() or b"")[1]
            (results if message.topic() == METRIC_RESULTS_TOPIC else updates).append(record)
        self.apply(updates)
        self.apply_results(results)

    def apply(self, updates: Sequence[dict[str, Any]]) -> list[bool]:
        """Upsert decoded updates in one round trip; True for each one that was applied."""
        return self._upsert_all(
            (
                series_key(u["stream"], u["field"], u["group"]),
                latest_key(u["stream"]),
                f"{u['field']}|{u['group']}",
                u,
                False,
                LIVE_CHANNEL,
                "",
            )
            for u in updates
        )

    def apply_results(self, results: Sequence[dict[str, Any]]) -> list[bool]:
        """The same upsert for declared metrics' windows; retractions delete."""
        return self._upsert_all(
            (
                results_series_key(r["metric"], r["group_key"]),
                results_latest_key(r["metric"]),
                r["group_key"],
                r,
                r["deleted"],
                RESULTS_CHANNEL,
                r["generation"],
            )
            for r in results
        )

    def _upsert_all(
        self, items: Iterable[tuple[str, str, str, dict[str, Any], bool, str, str]]
    ) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        count = 0
        for series, latest, member, update, deleted, channel, generation in items:
            self._upsert(
                keys=[series, latest, channel],
                args=[
                    member,
                    metric_json(update),
                    update["window_start"],
                    update["version"],
                    self.series_length,
                    self.history,
                    "1" if deleted else "0",
                    generation,
                    "1" if update["final"] else "0",
                    update["count"],
                ],
                client=pipe,
            )
            count += 1
        if not count:
            return []
        return [bool(applied) for applied in pipe.execute()]
