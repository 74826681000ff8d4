"""Declared metrics over HTTP: define, list, delete, read results, follow live.

``POST /v1/metrics`` takes the same declaration as ``metrics.yaml`` (see
``streams/metrics/definition.py``); a declaration that cannot run gets a 422 listing every
problem with its path. Results come from ClickHouse (``/results``, exact, read with ``FINAL``)
or Redis (``GET /v1/metrics/{name}``: the latest window per group, and ``/live`` over SSE).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import reads
from api.bodies import json_body
from api.live.endpoints import follow
from api.live.stream import EventStream
from api.params import int_param, time_param
from api.problems import Problem
from api.services import Services
from riverbed.core.topology import (
    RESULTS_CHANNEL,
)
from schemas.declaration_store import DeclaredInFile
from sinks.redis_writer import clear_results
from streams.metrics.definition import MetricError
from streams.metrics.store import MetricNotFound, StoredMetric, to_public

log = logging.getLogger(__name__)
MAX_GROUPS = 100  # ?group= values answered per request


def _stored(services: Services, name: str) -> StoredMetric:
    try:
        return services.metric_store.get(name)
    except MetricNotFound:
        raise Problem(404, "No such metric", f"no declared metric {name!r}", metric=name) from None


async def list_metrics(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    stored = await anyio.to_thread.run_sync(services.metric_store.all)
    return JSONResponse(
        {
            "metrics": [to_public(m) for m in stored.values()],
            "file": str(services.settings.metrics_path),
            "file_errors": services.metrics_file_errors,
        }
    )


async def create_metric(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    payload = await json_body(request)
    if isinstance(payload, dict) and payload.get("name") in services.catalog.names():
        raise Problem(
            409, "Name taken", f"{payload['name']!r} is a stream; pick another metric name"
        )
    # MetricError (422, every problem at its pointer) and MetricExists (409) speak for themselves.
    stored = await anyio.to_thread.run_sync(services.metric_store.create, payload)
    location = f"/v1/metrics/{stored.value.name}"
    return JSONResponse(to_public(stored), status_code=201, headers={"Location": location})


async def put_metric(request: Request) -> JSONResponse:
    """Declare or replace the metric of this name (an API declaration; one from the metrics
    file is changed in the file). A replaced metric starts afresh: its new definition is a new
    generation, and the live values of the old one are cleared."""
    services: Services = request.app.state.services
    name = request.path_params["name"]
    if name in services.catalog.names():
        raise Problem(409, "Name taken", f"{name!r} is a stream; pick another metric name")
    payload = await json_body(request)
    try:
        stored, created = await anyio.to_thread.run_sync(
            services.metric_store.replace, name, payload
        )
    except DeclaredInFile:
        raise Problem(
            409,
            "Declared in file",
            f"{name!r} comes from {services.settings.metrics_path}; change it there",
        ) from None
    if not created:
        await anyio.to_thread.run_sync(clear_results, services.sync_redis, name)
    return JSONResponse(
        to_public(stored),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/metrics/{name}"},
    )


async def delete_metric(request: Request) -> Response:
    services: Services = request.app.state.services
    name = request.path_params["name"]
    try:
        await anyio.to_thread.run_sync(services.metric_store.delete, name)
        await anyio.to_thread.run_sync(clear_results, services.sync_redis, name)
    except DeclaredInFile:
        raise Problem(
            409,
            "Declared in file",
            f"{name!r} comes from {services.settings.metrics_path}; remove it there",
        ) from None
    return Response(status_code=204)


async def get_metric(request: Request) -> JSONResponse:
    """A declared metric with its latest window per group; for a stream name, the stream's
    built-in metrics (the older spelling of ``/v1/streams/{stream}/metrics``)."""
    services: Services = request.app.state.services
    name = request.path_params["name"]
    try:
        stored = await anyio.to_thread.run_sync(services.metric_store.get, name)
    except MetricNotFound:
        if name in services.catalog.names():
            request.path_params["stream"] = name
            return await reads.get_metrics(request)
        raise Problem(404, "No such metric", f"no declared metric {name!r}") from None
    latest = await services.live.metric_latest(name)
    recent: dict[str, list[Any]] = {}
    for group in request.query_params.getlist("group")[:MAX_GROUPS]:
        recent[group] = await services.live.metric_series(name, group)
    running = await anyio.to_thread.run_sync(services.metric_store.applied)
    return JSONResponse(
        {**to_public(stored), "running": running, "latest": latest, "recent": recent}
    )


async def metric_results(request: Request) -> JSONResponse:
    """Windows from ClickHouse: ``?group=`` (key), ``from``/``to`` (window start), ``final``."""
    services: Services = request.app.state.services
    stored = _stored(services, request.path_params["name"])
    metric = stored.value
    group = request.query_params.get("group")
    start, end = time_param(request, "from"), time_param(request, "to")
    final_only = request.query_params.get("final") in ("1", "true")
    limit = int_param(request, "limit", 1000, 1, 100_000)
    windows = await anyio.to_thread.run_sync(
        lambda: services.metric_results.windows(
            metric.name,
            metric.generation,
            limit=limit,
            group=group,
            start=start,
            end=end,
            final_only=final_only,
        )
    )
    return JSONResponse({"metric": metric.name, "windows": windows})


async def live_metric(request: Request) -> EventStream:
    """SSE: the latest window of each group (``snapshot``), then every applied update."""
    services: Services = request.app.state.services
    name = request.path_params["name"]
    _stored(services, name)
    filters = {"metric": name}
    if "group" in request.query_params:
        filters["group_key"] = request.query_params["group"]

    async def snapshot() -> list[bytes | str]:
        return await services.live.metric_snapshot(name)

    return await follow(request, RESULTS_CHANNEL, filters, snapshot, f"metric:{name}")


async def follow_metrics_file(services: Services, interval: float = 2.0) -> None:
    """Re-sync ``metrics.yaml`` whenever it changes, so editing the file is enough."""
    path = services.settings.metrics_path
    seen: float | None = None
    while True:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        if mtime != seen:
            seen = mtime
            try:
                await anyio.to_thread.run_sync(sync_metrics_file, services)
            except Exception:  # Redis down, a bug: log it, keep following the file
                log.exception("metrics file %s: sync failed; will retry on its next change", path)
                seen = None
        await asyncio.sleep(interval)


def sync_metrics_file(services: Services) -> None:
    path = services.settings.metrics_path
    try:
        report = services.metric_store.sync_file(path)
    except MetricError as exc:
        services.metrics_file_errors = [problem.to_dict() for problem in exc.problems]
        log.error("metrics file %s not applied: %s", path, exc)
        return
    services.metrics_file_errors = []
    for name in report["changed"] + report["removed"]:
        clear_results(services.sync_redis, name)  # the old windows' live values are stale
    if any(report.values()):
        log.warning("metrics file %s applied: %s", path, report)
