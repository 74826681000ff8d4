"""``POST /v1/streams/{stream}/events``: the HTTP face of the Ingestor.

What HTTP alone knows lives here: the body's size limit, JSON/NDJSON parsing, the per-request
event limit and the status codes. Accepted means acknowledged by Kafka (acks=all)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.bodies import read_body
from api.ingest.batch import parse_events
from api.ingest.service import Draining
from api.problems import Problem
from api.services import Services


async def post_events(request: Request) -> JSONResponse:
    """Parse the body, hand the events to the Ingestor, answer 202 (all accepted) or 207."""
    services: Services = request.app.state.services
    if services.ingestor.draining:
        raise Draining()  # before reading a body that will not be used
    stream = request.path_params["stream"]
    services.stream(stream)  # 404 before reading the body
    atomic = request.query_params.get("atomic", "false").lower() in ("1", "true", "yes")
    settings = services.settings
    body = await read_body(request, settings.max_body_bytes, settings.body_read_timeout_seconds)
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
    result = await services.ingestor.ingest(
        stream, events, atomic=atomic, schema_version=request.query_params.get("schema_version")
    )
    answer: dict[str, Any] = {
        "accepted": len(result.batch.accepted),
        "rejected": len(result.batch.rejected),
        "event_ids": result.event_ids,
        "results": result.per_event(),
    }
    quarantined = sum(1 for event in result.batch.accepted if event.quarantine)
    if quarantined:  # stored, but the metrics will set them aside as late
        answer["quarantined"] = quarantined
    if result.batch.duplicates:  # later copies of an event_id: not produced
        answer["duplicates"] = [d.to_dict() for d in result.batch.duplicates]
    if result.batch.rejected:
        return JSONResponse({**answer, "errors": result.errors()}, status_code=207)
    return JSONResponse(answer, status_code=202)
