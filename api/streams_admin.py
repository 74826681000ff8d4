"""Create and evolve streams at run time: ``POST /v1/streams``, ``PUT /v1/streams/{s}/schema``.

The request bodies are pydantic models, so a malformed one gets a 422 naming each wrong member;
the schema itself is then checked like any registration (409 with the rule and the field path
when an evolution breaks compatibility). Kafka topics and the ClickHouse table are created before
the answer, so the stream is usable as soon as the client hears back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.models import NewSchema, NewStream, read_model
from api.services import Services
from riverbed.core.clickhouse import ClickHouse
from riverbed.core.kafka import ensure_topics
from riverbed.core.topology import events_topic
from schemas.bootstrap import stream_topic_configs
from schemas.catalog import StreamSpec, check_spec
from schemas.codec import subject
from schemas.stream_catalog import StreamCatalog
from sinks.ddl import columns_for
from sinks.tables import sync_stream_table


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
