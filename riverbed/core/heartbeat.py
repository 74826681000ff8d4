"""Liveness of every pipeline process, visible to the API's ``/readyz`` and, as it starts and
stops, to ``/v1/live/status``.

Each process refreshes a short-lived Redis key; a process that stops beating (crashed, hung,
partitioned away) disappears from the report within the TTL. Keys are per instance, so scaled-out
agents and sinks each show up.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis

from riverbed.core.live_log import record_status
from riverbed.core.redis import as_text
from riverbed.core.topology import HEARTBEAT_PREFIX


def instance_key(component: str) -> str:
    return f"{HEARTBEAT_PREFIX}:{component}:{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Beats from a daemon thread every ``interval`` seconds until :meth:`stop`."""

    def __init__(
        self, client: redis.Redis, component: str, interval: float = 2.0, ttl: int = 10
    ) -> None:
        self.client = client
        self.component = component
        self.key = instance_key(component)
        self.interval = interval
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{component}", daemon=True
        )

    def start(self) -> Heartbeat:
        self._thread.start()
        self._status("started")
        return self

    def _status(self, state: str) -> None:
        process = self.key[len(HEARTBEAT_PREFIX) + len(self.component) + 2 :]  # host:pid
        record_status(
            self.client, "process", component=self.component, process=process, state=state
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            # Redis down: the key expires and /readyz shows this process as missing, which is
            # the report we want; the beat itself must not take the process down.
            with contextlib.suppress(redis.RedisError):
                self.client.set(self.key, json.dumps({"at": time.time()}), ex=self.ttl)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):  # it expires on its own anyway
            self.client.delete(self.key)
        self._status("stopped")


def start_heartbeat(redis_url: str, component: str) -> Heartbeat:
    return Heartbeat(redis.Redis.from_url(redis_url), component).start()


def live_components(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """``{component: {"instances": n, "oldest_beat_s": age}}`` from the keys still alive."""
    beats = ((key, client.get(key)) for key in client.scan_iter(f"{HEARTBEAT_PREFIX}:*", count=500))
    return summarise(beats, time.time())


def summarise(beats: Iterable[tuple[Any, Any]], now: float) -> dict[str, dict[str, Any]]:
    """Heartbeat keys and their values (None: expired meanwhile) by component, as
    :func:`live_components` reports them; shared with readers on an asyncio client."""
    report: dict[str, dict[str, Any]] = {}
    for key, raw in beats:
        if raw is None:
            continue
        component = as_text(key)[len(HEARTBEAT_PREFIX) + 1 :].split(":", 1)[0]
        age = round(now - json.loads(raw)["at"], 1)
        entry = report.setdefault(component, {"instances": 0, "oldest_beat_s": 0.0})
        entry["instances"] += 1
        entry["oldest_beat_s"] = max(entry["oldest_beat_s"], age)
    return report
