"""Create and evolve streams at run time: ``POST /v1/streams``, ``PUT /v1/streams/{s}/schema``.

The request bodies are pydantic models, so a malformed one gets a 422 naming each wrong member;
the schema itself is then checked like any registration (409 with the rule and the field path
when an evolution breaks compatibility). Kafka topics and the ClickHouse table are created before
the answer, so the stream is usable as soon as the client hears back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.audit import note
from api.models import NewSchema, NewStream, read_model
from api.services import Services
from riverbed.core.clickhouse import ClickHouse, quote, string_literal
from riverbed.core.drain import drain
from riverbed.core.errors import Conflict, Unavailable
from riverbed.core.kafka import ensure_topics
from riverbed.core.topology import (
    AGENTS_GROUP,
    CLICKHOUSE_SINK_GROUP,
    DEAD_LETTERS_TABLE,
    clean_topic,
    dlq_topic,
    events_table,
    events_topic,
    latest_key,
    replayed_key,
    series_key,
    stats_key,
)
from schemas.bootstrap import stream_topic_configs
from schemas.catalog import StreamSpec, check_spec
from schemas.codec import subject
from schemas.stream_catalog import StreamCatalog
from sinks.ddl import columns_for
from sinks.tables import sync_stream_table

log = logging.getLogger(__name__)


def evolve_stream(
    catalog: StreamCatalog, clickhouse: ClickHouse, database: str, name: str, schema: dict
) -> StreamSpec:
    """Give a stream a new producer-facing schema and its table the columns to match.

    Everything that can refuse runs before anything changes: the declaration's checks, the
    ClickHouse type mapping, then the registry's compatibility check inside
    :meth:`StreamCatalog.evolve`. The table follows the clean schema the catalog now writes
    with, which is the registry's latest version, even when ``schema`` is an earlier shape.
    """
    candidate = dataclasses.replace(catalog.get(name), schema=schema)
    check_spec(candidate, f"stream {name!r}")
    columns_for(candidate.clean_schema)  # raises UnsupportedType, naming the field
    evolved = catalog.evolve(name, schema)
    sync_stream_table(clickhouse, database, name, catalog.registry.schema(catalog.ids(name).clean))
    return evolved


def _describe(services: Services, name: str) -> dict[str, Any]:
    versions = services.registry.versions(subject(events_topic(name)))
    return {**services.catalog.get(name).to_public(), "schema_version": versions[-1]}


async def create_stream(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    body: NewStream = await read_model(request, NewStream)
    spec = StreamSpec(
        name=body.name,
        schema=body.schema_,
        key_field=body.key_field,
        time_field=body.time_field,
        group_by=body.group_by,
        window_seconds=body.window_seconds,
        retention_ms=body.retention_ms,
        field_names=tuple(f.get("name") for f in body.schema_.get("fields", [])),
    )

    def create() -> dict[str, Any]:
        check_spec(spec, f"stream {spec.name!r}")
        # Refuse what ClickHouse cannot store before anything is registered or created.
        columns_for(spec.clean_schema)
        services.catalog.create(spec)
        ensure_topics(services.settings, **stream_topic_configs({spec.name: spec}))
        clean_schema = services.registry.schema(services.catalog.ids(spec.name).clean)
        database = services.settings.clickhouse_database
        sync_stream_table(services.clickhouse, database, spec.name, clean_schema)
        return _describe(services, spec.name)

    return JSONResponse(
        await anyio.to_thread.run_sync(create),
        status_code=201,
        headers={"Location": f"/v1/streams/{spec.name}"},
    )


async def evolve_schema(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    name = request.path_params["stream"]
    services.stream(name)  # 404 before parsing the body
    body: NewSchema = await read_model(request, NewSchema)

    def evolve() -> dict[str, Any]:
        database = services.settings.clickhouse_database
        evolve_stream(services.catalog, services.clickhouse, database, name, body.schema_)
        return _describe(services, name)

    return JSONResponse(await anyio.to_thread.run_sync(evolve))


class StreamInUse(Conflict):
    """Declared metrics compute over the stream; they go first."""

    title = "Stream in use"

    def __init__(self, stream: str, metrics: list[str]) -> None:
        super().__init__(
            f"declared metrics use stream {stream}: {', '.join(metrics)}; delete them first"
        )
        self.metrics = metrics

    def extra(self) -> dict[str, Any]:
        return {**super().extra(), "metrics": self.metrics}


class StillDraining(Unavailable):
    """The stream takes no more events, but the agents and sinks are not through with it."""

    title = "Stream still draining"

    def __init__(self, stream: str, seconds: float) -> None:
        super().__init__(
            f"stream {stream} takes no more events, but what it accepted was not all processed "
            f"within {seconds:.0f} s; repeat the DELETE to finish",
            retry_after=5,
        )


def _purge_live_values(services: Services, name: str) -> None:
    client = services.sync_redis
    keys = [stats_key(name), latest_key(name), replayed_key(name)]
    keys += list(client.scan_iter(match=series_key(name, "*", "*"), count=1000))
    client.delete(*keys)


def _retire_table(services: Services, name: str, purge: bool) -> str | None:
    """Drop the stream's table (``purge``) or keep it under a dated name, out of the way of a
    new stream of the same name; the name it is kept under, or None."""
    database = services.settings.clickhouse_database
    table = f"{quote(database)}.{quote(events_table(name))}"
    if purge:
        services.clickhouse.command(f"DROP TABLE IF EXISTS {table}")
        services.clickhouse.command(
            f"ALTER TABLE {quote(database)}.{quote(DEAD_LETTERS_TABLE)} "
            f"DELETE WHERE stream = {string_literal(name)}"
        )
        return None
    kept = f"{events_table(name)}__deleted_{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    services.clickhouse.command(f"RENAME TABLE {table} TO {quote(database)}.{quote(kept)}")
    return f"{database}.{kept}"


async def delete_stream(request: Request) -> JSONResponse:
    """Stop intake, wait until the agents and sinks hold nothing unprocessed of the stream,
    then forget it; its table is kept (renamed) unless ``purge``, its topics are kept."""
    services: Services = request.app.state.services
    name = request.path_params["stream"]
    spec = services.stream(name)
    purge = request.query_params.get("purge", "false").lower() in ("1", "true", "yes")
    using = sorted(
        metric
        for metric, stored in (await anyio.to_thread.run_sync(services.metric_store.all)).items()
        if stored.value.stream == name
    )
    if using:
        raise StreamInUse(name, using)
    await anyio.to_thread.run_sync(services.catalog.close, name)
    note(request, stream=name, purge=purge)
    settings = services.settings
    groups = {
        AGENTS_GROUP: [events_topic(name)],
        CLICKHOUSE_SINK_GROUP: [clean_topic(name), dlq_topic(name)],
    }
    seconds = settings.stream_delete_drain_seconds
    drained = await anyio.to_thread.run_sync(
        lambda: drain(settings.require_kafka(), groups, timeout=seconds, report=log.warning)
    )
    if not drained:
        raise StillDraining(name, seconds)

    def tear_down() -> dict[str, Any]:
        subjects = services.catalog.remove(name)
        kept = _retire_table(services, name, purge)
        _purge_live_values(services, name)
        # The topics stay: librdkafka clients subscribed to them (the flow, the sinks' pattern
        # subscriptions) crash on the embedded broker when a topic is deleted under them.
        # Every record in them is processed; a stream created again under the name goes on
        # from the committed offsets.
        topics = [events_topic(name), clean_topic(name), dlq_topic(name), *spec.route_topics]
        return {"stream": name, "kept_topics": topics, "deleted_subjects": subjects, "table": kept}

    return JSONResponse(await anyio.to_thread.run_sync(tear_down))
