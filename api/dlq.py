"""Dead letters: list them (``GET /v1/streams/{s}/dlq``) and replay them once fixed.

Dead letters are read from ClickHouse (the sink copies every ``dlq.*`` record there), so they
can be filtered and paged like events. Replay (:mod:`api.replay`) puts each one back where it
failed, once the check that failed it passes, and reports what happened to each.

Replayed letters are remembered in Redis and shown as ``replayed``; ``{"all": true}`` skips them.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.models import ReplayRequest, read_model
from api.params import decode_cursor, encode_cursor, int_param
from api.replay import replay
from api.services import Services

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
    report = await replay(services, spec, letters)
    report.failed += [
        {"dlq_id": i, "reason": "no such dead letter in this stream"} for i in unknown
    ]
    await anyio.to_thread.run_sync(services.dead_letters.mark_replayed, spec.name, report.replayed)
    return JSONResponse(
        {
            "requested": len(letters) + len(unknown),
            "replayed": len(report.replayed),
            "failed": report.failed,
            "skipped": report.skipped,
            "replayed_ids": report.replayed,
        }
    )
