"""``POST /v1/streams/{stream}/events``: accepted means acknowledged by Kafka (acks=all)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.batch import PreparedBatch, parse_events, prepare_batch
from api.problems import Problem
from api.services import Services
from riverbed.core.kafka import KafkaUnavailable, OutgoingRecord
from riverbed.core.topology import dlq_topic, events_topic
from schemas import codec
from schemas.catalog import StreamSpec
from schemas.registry import RegistryError
from schemas.system import dead_letter


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(
            413,
            "Body too large",
            f"body of {declared} bytes exceeds the {limit}-byte "
            "limit; split it into several requests",
            limit=limit,
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(
                413,
                "Body too large",
                f"body exceeds the {limit}-byte limit; split it into several requests",
                limit=limit,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _records(
    services: Services, spec: StreamSpec, batch: PreparedBatch, ingest_id: int, now: int
) -> list[OutgoingRecord]:
    """Accepted events for ``events.*`` and, per the batch rule, rejects for ``dlq.*``."""
    dead_letter_id = services.catalog.ids(spec.name).dead_letter
    records = [
        OutgoingRecord(
            events_topic(spec.name),
            event.key,
            codec.encode(services.registry, ingest_id, event.datum),
        )
        for event in batch.accepted
    ]
    for reject in batch.rejected:
        dead = dead_letter(
            spec.name,
            "ingest",
            reject.summary(),
            reject.original,
            reject.event_id,
            now,
        )
        records.append(
            OutgoingRecord(
                dlq_topic(spec.name), None, codec.encode(services.registry, dead_letter_id, dead)
            )
        )
    return records


def _writer_schema(services: Services, spec: StreamSpec, request: Request) -> tuple[int, dict]:
    """The schema events are validated and written with: latest, or ``?schema_version=N``.

    Older versions keep working after an evolution: their records carry their own schema id
    and consumers resolve them to the latest shape.
    """
    version = request.query_params.get("schema_version")
    if version is None:
        return services.catalog.ids(spec.name).ingest, spec.schema
    if not (version.isascii() and version.isdigit()) and version != "latest":
        raise Problem(
            400,
            "Bad parameter",
            "schema_version must be a version number or 'latest'",
            parameter="schema_version",
        )
    try:
        return services.catalog.ingest_version(spec.name, version)
    except RegistryError as exc:
        raise Problem(
            404 if exc.status == 404 else 400,
            "Unknown schema version",
            str(exc),
            parameter="schema_version",
        ) from None


async def post_events(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    if services.draining:
        raise Problem(
            503,
            "Shutting down",
            "Riverbed is draining before a restart; nothing was accepted, retry shortly",
            headers={"Retry-After": "10"},
        )
    spec = services.stream(request.path_params["stream"])
    atomic = request.query_params.get("atomic", "false").lower() in ("1", "true", "yes")
    body = await read_body(request, services.settings.max_body_bytes)
    # BodyError: a 400 with the line and column where the body stops being JSON.
    events = parse_events(body, request.headers.get("content-type", "application/json"))
    limit = services.settings.max_events_per_request
    if len(events) > limit:
        raise Problem(
            413,
            "Too many events",
            f"{len(events)} events exceed the limit of {limit} per request",
            limit=limit,
        )
    if not events:
        raise Problem(400, "No events", "the body holds no events")
    ingest_id, schema = _writer_schema(services, spec, request)
    now = time.time_ns() // 1_000_000
    batch = prepare_batch(spec, events, now, schema)
    errors = [entry for reject in batch.rejected for entry in reject.to_dicts()]
    if batch.rejected and (atomic or not batch.accepted):
        if not atomic:
            rejects = PreparedBatch([], batch.rejected)
            await _produce(services, _records(services, spec, rejects, ingest_id, now))
        first = batch.rejected[0]
        raise Problem(
            400,
            "Invalid events",
            f"{len(batch.rejected)} of {len(events)} events are invalid; first at index "
            f"{first.index}: {first.summary()}",
            errors=errors,
            accepted=0,
        )
    try:
        await _produce(services, _records(services, spec, batch, ingest_id, now))
    except KafkaUnavailable as exc:
        # Some of the batch may be in Kafka already: give the client the ids so that its
        # retry carries the same ones and the copies are dropped as duplicates.
        raise Problem(
            503,
            "Broker unavailable",
            f"Kafka did not acknowledge the events: {exc}",
            headers={"Retry-After": "5"},
            event_ids=[e.event_id for e in batch.accepted],
        ) from None
    body_out = {
        "accepted": len(batch.accepted),
        "rejected": len(batch.rejected),
        "event_ids": [e.event_id for e in batch.accepted],
    }
    if batch.rejected:
        return JSONResponse({**body_out, "errors": errors}, status_code=207)
    return JSONResponse(body_out, status_code=202)


async def _produce(services: Services, records: list[OutgoingRecord]) -> None:
    errors = await services.producer.produce(records)
    failed = [e for e in errors if e]
    if failed:
        error = failed[0]
        raise KafkaUnavailable(
            f"{len(failed)} of {len(records)} records failed "
            f"(first: {error}); retry with the same event_ids, duplicates are "
            "dropped"
        )
