"""Entries of the live logs: Redis Streams whose entries the API's live hub sends as SSE
messages (``api.live.hub``), the entry id being the message id.

An entry is always one field, :data:`FIELD`, holding the message's JSON, and every log is
bounded by ``MAXLEN ~ history``: a reconnect older than that gets ``reset``. Writers append
through :func:`append` (the agents' event tail, the alerts); the Redis sink's Lua script
writes its metric updates the same way, atomically with the values they update.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from riverbed.core.topology import STATUS_CHANNEL

log = logging.getLogger(__name__)
STATUS_HISTORY = 10_000  # status changes kept for reconnecting clients

FIELD = "u"


def _plain(value: Any) -> Any:
    """JSON for what Avro decodes to beyond JSON's types."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def entry(message: dict[str, Any]) -> dict[str, str]:
    """The fields of one log entry carrying ``message``."""
    return {FIELD: json.dumps(message, separators=(",", ":"), default=_plain)}


def append(client: Any, key: str, message: dict[str, Any], history: int) -> Any:
    """XADD ``message`` to the log ``key``, trimmed to about ``history`` entries; ``client`` is
    a Redis client or pipeline, sync or async (what it returns, the caller awaits or not)."""
    return client.xadd(key, entry(message), maxlen=history, approximate=True)


def record_status(client: redis.Redis, kind: str, **fields: Any) -> None:
    """Append a change of the system's state to the status log (``/v1/live/status``): a
    process started, stopped or crashed, an engine restarted. Best effort: a Redis that does
    not answer must not stop what is being reported (the heartbeats and ``/readyz`` say it
    too)."""
    message = {"kind": kind, "at": round(time.time(), 3), **fields}
    try:
        append(client, STATUS_CHANNEL, message, STATUS_HISTORY)
    except redis.RedisError as exc:
        log.warning("could not record %s in the status log: %s", message, exc)


def crash_recorder(redis_url: str) -> Callable[[str, int, float], None]:
    """What a supervisor calls when a process it runs exits unasked (its ``on_crash``)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)

    def crashed(component: str, code: int, restart_in: float) -> None:
        record_status(
            client,
            "process",
            component=component,
            state="crashed",
            code=code,
            restart_in_s=restart_in,
        )

    return crashed
