"""``/healthz`` (the process is up) and ``/readyz`` (every component answers)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio.to_thread
from confluent_kafka.admin import AdminClient
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.services import Services
from riverbed.core.clickhouse import ClickHouseError
from riverbed.core.heartbeat import live_components
from riverbed.core.redis import as_text
from riverbed.core.topology import ENGINES_KEY, stats_key


def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _kafka_check(bootstrap: str) -> dict[str, Any]:
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3).topics
    return {"ok": True, "topics": len(topics)}


async def _check(name: str, probe: Any) -> tuple[str, dict[str, Any]]:
    try:
        return name, await asyncio.wait_for(probe(), timeout=5)
    except Exception as exc:  # a readiness probe reports every failure, whatever its type
        return name, {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def _dead_letter_counts(services: Services) -> dict[str, dict[str, int]]:
    """Dead letters per stream and stage, as stored in ClickHouse; empty if it cannot answer
    (the ``clickhouse`` component then reports why)."""
    try:
        return await anyio.to_thread.run_sync(services.dead_letters.counts_by_stream)
    except ClickHouseError:
        return {}


async def readyz(request: Request) -> JSONResponse:
    """Public, for probes and balancers: ready or not, and which component is not. With any
    valid credential, the rest: errors, processes, engine restarts, per-stream counters (an
    anonymous caller learns nothing of the pipeline's internals or its addresses)."""
    services: Services = request.app.state.services
    detailed = request.user.is_authenticated

    async def kafka() -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_kafka_check, services.settings.require_kafka())

    async def redis() -> dict[str, Any]:
        return {"ok": bool(await services.redis.ping())}

    async def clickhouse() -> dict[str, Any]:
        await anyio.to_thread.run_sync(lambda: services.clickhouse.query("SELECT 1"))
        return {"ok": True}

    results = dict(
        await asyncio.gather(
            _check("kafka", kafka), _check("redis", redis), _check("clickhouse", clickhouse)
        )
    )
    ready = all(r["ok"] for r in results.values()) and not services.draining
    if not detailed:
        return JSONResponse(
            {
                "ready": ready,
                "draining": services.draining,
                "components": {name: {"ok": r["ok"]} for name, r in results.items()},
            },
            status_code=200 if ready else 503,
        )
    streams: dict[str, dict[str, Any]] = {}
    for name in services.catalog.names():
        raw = await services.redis.hgetall(stats_key(name))
        counters = {as_text(k): int(v) for k, v in raw.items()}
        # The agents count only the letters they write; the stage makes that explicit.
        if "dead_letters" in counters:
            counters["dead_letters_process"] = counters.pop("dead_letters")
        streams[name] = counters
    for name, counts in (await _dead_letter_counts(services)).items():
        entry = streams.setdefault(name, {})
        entry["dead_letters_by_stage"] = counts
        entry["dead_letters"] = sum(counts.values())  # every stage: ingest, process, ...
    # Other processes are reported, not required: the API can accept events while an agent
    # restarts (Kafka holds them), so their absence must not take ingest out of a balancer.
    pipeline = await anyio.to_thread.run_sync(live_components, services.sync_redis)
    engines = {
        as_text(k): json.loads(v) for k, v in (await services.redis.hgetall(ENGINES_KEY)).items()
    }
    janitor = getattr(request.app.state, "journal_janitor", None)
    return JSONResponse(
        {
            "ready": ready,
            "draining": services.draining,
            "components": results,
            "processes": pipeline,
            "engine_restarts": engines,
            "journal": janitor.status() if janitor is not None else None,
            "streams": streams,
        },
        status_code=200 if ready else 503,
    )
