"""Dead letters: list them (``GET /v1/streams/{s}/dlq``) and replay them once fixed.

Dead letters are read from ClickHouse (the sink copies every ``dlq.*`` record there), so they
can be filtered and paged like events. Replay puts each one back where it failed:

- ``ingest``: the posted JSON is validated again against the current schema and produced to
  ``events.*`` (with its original or generated ``event_id``, so replaying twice is harmless);
- ``process``: the original record goes back to ``events.*`` for the agents;
- ``sink``: the clean record is inserted into ClickHouse again (not re-produced, which would
  count it twice in the aggregates);
- ``aggregate`` (late events) cannot reopen a closed window and is reported as skipped.

Replayed letters are remembered in Redis and shown as ``replayed``; ``{"all": true}`` skips them.
"""

from __future__ import annotations

import base64
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.ingest.batch import parse_events
from api.models import ReplayRequest, read_model
from api.params import decode_cursor, encode_cursor, int_param
from api.services import Services
from riverbed.core.clickhouse import ClickHouseError
from riverbed.core.errors import Invalid, RiverbedError
from riverbed.core.kafka import OutgoingRecord
from riverbed.core.topology import events_topic
from schemas import codec
from schemas.catalog import EVENT_ID_FIELD, StreamSpec
from sinks.ddl import row_converter

MAX_REPLAY = 10_000


async def list_dead_letters(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    spec = services.stream(request.path_params["stream"])
    limit = int_param(request, "limit", 100, 1, 1000)
    stage = request.query_params.get("stage") or None
    cursor = request.query_params.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    store = services.dead_letters

    def read() -> tuple[list[dict], dict[str, int], set[str]]:
        letters = store.page(spec.name, limit=limit, stage=stage, after=after)
        return letters, store.counts(spec.name), store.replayed(spec.name)

    letters, counts, replayed = await anyio.to_thread.run_sync(read)
    for letter in letters:
        letter["replayed"] = letter["dlq_id"] in replayed
    next_cursor = None
    if len(letters) == limit:
        next_cursor = encode_cursor(int(letters[-1]["_t"]), letters[-1]["dlq_id"])
    for letter in letters:
        letter.pop("_t", None)
    return JSONResponse(
        {"stream": spec.name, "counts": counts, "dead_letters": letters, "next_cursor": next_cursor}
    )


def _ingest_record(services: Services, spec: StreamSpec, letter: dict) -> OutgoingRecord:
    """Validate the posted JSON again; raises :class:`Invalid` naming every problem if it still
    fails (or :class:`BodyError` if the stored body is not JSON)."""
    original = base64.b64decode(letter["original"])
    (event,) = parse_events(original, "application/json")
    if isinstance(event, dict) and EVENT_ID_FIELD not in event and letter["event_id"]:
        event[EVENT_ID_FIELD] = letter["event_id"]
    writer_id, batch = services.ingestor.prepare(spec, [event])
    if batch.rejected:
        rejected = batch.rejected[0]
        raise Invalid(rejected.problems, f"still invalid: {rejected.summary()}")
    (record,) = services.ingestor.records(spec, batch, writer_id)
    return record


def _sink_row(services: Services, spec: StreamSpec, letter: dict) -> dict[str, Any]:
    clean_id = services.catalog.ids(spec.name).clean
    original = base64.b64decode(letter["original"])
    _, record = codec.decode(services.registry, original, reader_id=clean_id)
    return row_converter(services.registry.schema(clean_id))(record)


def _plan(
    services: Services, spec: StreamSpec, letters: list[dict]
) -> tuple[list[tuple[str, OutgoingRecord]], list[tuple[str, dict]], list[dict], list[dict]]:
    """Sort letters into records to produce, rows to insert, failures and skips."""
    produce: list[tuple[str, OutgoingRecord]] = []
    insert: list[tuple[str, dict]] = []
    failed: list[dict] = []
    skipped: list[dict] = []
    for letter in letters:
        dlq_id, stage = letter["dlq_id"], letter["stage"]
        try:
            if stage == "ingest":
                produce.append((dlq_id, _ingest_record(services, spec, letter)))
            elif stage == "process":
                original = base64.b64decode(letter["original"])
                produce.append((dlq_id, OutgoingRecord(events_topic(spec.name), None, original)))
            elif stage == "sink":
                insert.append((dlq_id, _sink_row(services, spec, letter)))
            else:
                skipped.append(
                    {
                        "dlq_id": dlq_id,
                        "reason": "late events cannot reopen a closed "
                        "window; the event itself is stored",
                    }
                )
        except (ValueError, RiverbedError) as exc:  # explained per letter, never a 500
            failed.append({"dlq_id": dlq_id, "reason": str(exc)})
    return produce, insert, failed, skipped


async def replay_dead_letters(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    spec = services.stream(request.path_params["stream"])
    body = await read_model(request, ReplayRequest)
    ids, replay_all = body.ids, body.all

    def select() -> list[dict]:
        if replay_all:
            return services.dead_letters.not_replayed(spec.name, MAX_REPLAY)
        return services.dead_letters.by_ids(spec.name, ids or [], MAX_REPLAY)

    letters = await anyio.to_thread.run_sync(select)
    unknown = sorted(set(ids or []) - {letter["dlq_id"] for letter in letters})
    produce, insert, failed, skipped = await anyio.to_thread.run_sync(
        _plan, services, spec, letters
    )
    failed += [{"dlq_id": i, "reason": "no such dead letter in this stream"} for i in unknown]
    errors = await services.producer.produce([record for _, record in produce])
    done = [dlq_id for (dlq_id, _), error in zip(produce, errors, strict=True) if not error]
    failed += [
        {"dlq_id": dlq_id, "reason": f"Kafka: {error}"}
        for (dlq_id, _), error in zip(produce, errors, strict=True)
        if error
    ]
    # Recorded before the inserts, so a failure there cannot replay these twice.
    await anyio.to_thread.run_sync(services.dead_letters.mark_replayed, spec.name, done)
    if insert:
        rows = [row for _, row in insert]
        try:
            await anyio.to_thread.run_sync(services.events.insert, spec.name, rows)
        except ClickHouseError as exc:
            failed += [{"dlq_id": i, "reason": f"ClickHouse: {exc}"} for i, _ in insert]
        else:
            inserted = [dlq_id for dlq_id, _ in insert]
            await anyio.to_thread.run_sync(services.dead_letters.mark_replayed, spec.name, inserted)
            done += inserted
    return JSONResponse(
        {
            "requested": len(letters) + len(unknown),
            "replayed": len(done),
            "failed": failed,
            "skipped": skipped,
            "replayed_ids": done,
        }
    )
