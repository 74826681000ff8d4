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
import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.batch import BodyError, parse_events, prepare_batch
from api.models import ReplayRequest, read_model
from api.params import decode_cursor, encode_cursor, int_param
from api.services import Services
from riverbed.core.clickhouse import ClickHouseError
from riverbed.core.errors import Invalid
from riverbed.core.kafka import OutgoingRecord
from riverbed.core.redis import as_text
from riverbed.core.topology import DEAD_LETTERS_TABLE, events_table, events_topic, replayed_key
from schemas import codec
from schemas.catalog import EVENT_ID_FIELD, StreamSpec
from schemas.registry import RegistryError
from sinks.ddl import quote, row_converter, string_literal

MAX_REPLAY = 10_000


def _table(services: Services) -> str:
    return f"{quote(services.settings.clickhouse_database)}.{quote(DEAD_LETTERS_TABLE)}"


def _letters(services: Services, stream: str, where: list[str], limit: int) -> list[dict]:
    conditions = " AND ".join([f"stream = {string_literal(stream)}", *where])
    sql = (
        "SELECT dlq_id, stage, error, event_id, toUnixTimestamp64Milli(failed_at) AS failed_at, "
        f"original FROM {_table(services)} FINAL WHERE {conditions} "
        f"ORDER BY failed_at DESC, dlq_id DESC LIMIT {limit}"
    )
    result = services.clickhouse.query(sql, {"output_format_json_quote_64bit_integers": 0})
    return result.records()


def _counts(services: Services, stream: str) -> dict[str, int]:
    result = services.clickhouse.query(
        f"SELECT stage, count() FROM {_table(services)} FINAL WHERE stream = "
        f"{string_literal(stream)} GROUP BY stage",
        {"output_format_json_quote_64bit_integers": 0},
    )
    return {stage: int(n) for stage, n in result.rows}


async def list_dead_letters(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    spec = services.stream(request.path_params["stream"])
    limit = int_param(request, "limit", 100, 1, 1000)
    where = []
    if stage := request.query_params.get("stage"):
        where.append(f"stage = {string_literal(stage)}")
    if cursor := request.query_params.get("cursor"):
        t, dlq_id = decode_cursor(cursor)
        where.append(
            f"(toUnixTimestamp64Milli(failed_at), dlq_id) < ({t}, {string_literal(dlq_id)})"
        )

    def read() -> tuple[list[dict], dict[str, int], set[str]]:
        letters = _letters(services, spec.name, where, limit)
        replayed = {as_text(m) for m in services.sync_redis.smembers(replayed_key(spec.name))}
        return letters, _counts(services, spec.name), replayed

    letters, counts, replayed = await anyio.to_thread.run_sync(read)
    for letter in letters:
        letter["replayed"] = letter["dlq_id"] in replayed
    next_cursor = None
    if len(letters) == limit:
        next_cursor = encode_cursor(int(letters[-1]["failed_at"]), letters[-1]["dlq_id"])
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
    batch = prepare_batch(spec, [event], time.time_ns() // 1_000_000)
    if batch.rejected:
        rejected = batch.rejected[0]
        raise Invalid(rejected.problems, f"still invalid: {rejected.summary()}")
    accepted = batch.accepted[0]
    value = codec.encode(services.registry, services.catalog.ids(spec.name).ingest, accepted.datum)
    return OutgoingRecord(events_topic(spec.name), accepted.key, value)


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
        except (ValueError, Invalid, BodyError, RegistryError) as exc:
            failed.append({"dlq_id": dlq_id, "reason": str(exc)})
    return produce, insert, failed, skipped


async def replay_dead_letters(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    spec = services.stream(request.path_params["stream"])
    body = await read_model(request, ReplayRequest)
    ids, replay_all = body.ids, body.all

    def select() -> list[dict]:
        replayed = {as_text(m) for m in services.sync_redis.smembers(replayed_key(spec.name))}
        if replay_all:
            letters = _letters(services, spec.name, [], MAX_REPLAY)
            return [letter for letter in letters if letter["dlq_id"] not in replayed]
        if not ids:
            return []
        wanted = ", ".join(string_literal(i) for i in ids)
        return _letters(services, spec.name, [f"dlq_id IN ({wanted})"], MAX_REPLAY)

    letters = await anyio.to_thread.run_sync(select)
    unknown = sorted(set(ids or []) - {letter["dlq_id"] for letter in letters})
    produce, insert, failed, skipped = _plan(services, spec, letters)
    failed += [{"dlq_id": i, "reason": "no such dead letter in this stream"} for i in unknown]
    errors = await services.producer.produce([record for _, record in produce])
    done = [dlq_id for (dlq_id, _), error in zip(produce, errors, strict=True) if not error]
    failed += [
        {"dlq_id": dlq_id, "reason": f"Kafka: {error}"}
        for (dlq_id, _), error in zip(produce, errors, strict=True)
        if error
    ]
    if done:  # recorded before the inserts, so a failure there cannot replay these twice
        await services.redis.sadd(replayed_key(spec.name), *done)
    if insert:

        def insert_rows() -> None:
            services.clickhouse.insert_json_rows(
                services.settings.clickhouse_database,
                events_table(spec.name),
                [r for _, r in insert],
            )

        try:
            await anyio.to_thread.run_sync(insert_rows)
        except ClickHouseError as exc:
            failed += [{"dlq_id": i, "reason": f"ClickHouse: {exc}"} for i, _ in insert]
        else:
            inserted = [dlq_id for dlq_id, _ in insert]
            await services.redis.sadd(replayed_key(spec.name), *inserted)
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
