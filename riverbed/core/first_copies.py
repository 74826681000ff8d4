"""Which Kafka record is the first copy of an event id: one Redis key per (stream, event id).

The key holds the position (``topic/partition/offset``) of the record that claimed it, for the
dedup horizon. Two parties claim, with the same script and so the same rule:

- the API, right after Kafka acknowledged an ingest, so that a later request carrying the same
  ``event_id`` is told ``duplicate`` in its answer (and not sent again), and a request that
  raced another with the same id learns that its copy is the one that will be dropped;
- the agents, for every record they read, so that a copy the API could not tell (Redis was
  away, or a record that did not come through the API) is still dropped exactly once.

A record whose own position is in the key is its first copy even when read again (a redelivery
after a crash); any other position makes it a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from riverbed.core.topology import dedup_key

# KEYS are dedup keys, ARGV[1] the TTL, ARGV[i+1] the position of KEYS[i].
# Per key, 1: first copy (claimed now, or already by this same record); 0: a duplicate.
_CLAIM = """
local verdicts = {}
for i, key in ipairs(KEYS) do
  local position = ARGV[i + 1]
  if redis.call('SET', key, position, 'NX', 'EX', ARGV[1]) then
    verdicts[i] = 1
  elseif redis.call('GET', key) == position then
    verdicts[i] = 1
  else
    verdicts[i] = 0
  end
end
return verdicts
"""


def source_position(topic: str, partition: int, offset: int) -> str:
    """Identifies one Kafka record; a redelivery of it is not a duplicate, a re-post is."""
    return f"{topic}/{partition}/{offset}"


class FirstCopies:
    """Claim and look up first copies of event ids; see the module docstring."""

    def __init__(self, client: aioredis.Redis, horizon_seconds: int) -> None:
        self.redis = client
        self.horizon_seconds = horizon_seconds
        self._claim = client.register_script(_CLAIM)

    async def claim(self, stream: str, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each ``(event_id, position)``: is that record the event's first copy?"""
        if not pairs:
            return []
        keys = [dedup_key(stream, event_id) for event_id, _ in pairs]
        verdicts = await self._claim(
            keys=keys, args=[self.horizon_seconds, *(position for _, position in pairs)]
        )
        return [bool(int(v)) for v in verdicts]

    async def claimed(self, stream: str, event_ids: Sequence[str]) -> set[str]:
        """The ids of ``event_ids`` whose first copy is already in Kafka."""
        if not event_ids:
            return set()
        positions = await self.redis.mget([dedup_key(stream, e) for e in event_ids])
        return {e for e, position in zip(event_ids, positions, strict=True) if position}

    async def release(self, stream: str, event_ids: Sequence[str]) -> None:
        """Forget the first copies of ``event_ids``: a dead-letter replay puts back an event
        that no stage kept, and its new record must not count as a duplicate of the old."""
        if event_ids:
            await self.redis.delete(*(dedup_key(stream, e) for e in event_ids))
