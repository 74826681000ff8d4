"""Reference-table entries: ``PUT``, ``GET`` and ``DELETE /v1/reference/{table}/{key}``.

An entry replaces the key's previous one (fields left out become null) and is in the compacted
topic ``ref.{table}`` before the answer; a delete writes the key's tombstone. The agents follow
that topic: events they process once the change has reached them (normally well under a
second) are enriched accordingly; events already processed keep what they got.

Reads come from this process's copy of the topics (``streams.reference_store``), which holds
its own writes at once and other processes' within a poll interval.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.bodies import json_body
from api.problems import Problem
from api.services import Services
from riverbed.core.journal import JournalRecord, alongside
from riverbed.core.kafka import Delivery, KafkaUnavailable, OutgoingRecord
from schemas.catalog import load_reference_tables
from schemas.reference import MAX_KEY_BYTES, ReferenceTable

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


@lru_cache(maxsize=4)
def declared_tables(schemas_dir: Path | None) -> dict[str, ReferenceTable]:
    """The ``[reference.*]`` tables of the catalog file this process bootstrapped from."""
    return load_reference_tables(schemas_dir)


def _table(services: Services, name: str) -> ReferenceTable:
    tables = declared_tables(services.settings.schemas_dir)
    table = tables.get(name)
    if table is None:
        raise Problem(
            404,
            "Unknown reference table",
            f"no reference table named {name!r}; streams.toml declares {sorted(tables)}",
        )
    return table


def _check_key(key: str) -> None:
    if not key or len(key.encode()) > MAX_KEY_BYTES or CONTROL_CHARACTERS.search(key):
        raise Problem(
            422,
            "Invalid key",
            f"a reference key is 1 to {MAX_KEY_BYTES} bytes of UTF-8 without control characters",
        )


async def _deliver(services: Services, record: OutgoingRecord) -> list[Delivery]:
    """Produce an entry; with the ingest journal (an in-memory broker), journal it too, so that
    a broker that comes back empty gets it again."""
    journaled = [JournalRecord(record.topic, record.key, record.value)]
    return await alongside(
        services.producer.deliver([record]), services.ingestor.journal, journaled
    )


async def put_entry(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    table = _table(services, request.path_params["table"])
    key = request.path_params["key"]
    _check_key(key)
    body = await json_body(request)
    attributes = table.attributes(body)  # InvalidAttributes: 422 naming every member
    value = json.dumps(attributes, sort_keys=True, separators=(",", ":")).encode()
    (written,) = await _deliver(services, OutgoingRecord(table.topic, key.encode(), value))
    if written.error:
        raise KafkaUnavailable(f"{table.topic} did not acknowledge the entry: {written.error}")
    services.reference.remember(table.name, key, attributes, written.partition, written.offset)
    return JSONResponse(
        {"table": table.name, "key": key, "topic": table.topic, "attributes": attributes}
    )


async def get_entry(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    table = _table(services, request.path_params["table"])
    key = request.path_params["key"]
    _check_key(key)
    if not services.reference.ready:
        raise Problem(
            503,
            "Reference tables loading",
            "this process is still reading the reference topics; retry shortly",
            headers={"Retry-After": "1"},
        )
    entry = services.reference.lookup(table.name, key)
    if entry is None:
        raise Problem(404, "No such entry", f"{table.name} has no entry {key!r}")
    return JSONResponse({"table": table.name, "key": key, "attributes": dict(entry)})


async def delete_entry(request: Request) -> Response:
    """Idempotent: deleting an absent key writes a tombstone all the same (204)."""
    services: Services = request.app.state.services
    table = _table(services, request.path_params["table"])
    key = request.path_params["key"]
    _check_key(key)
    (written,) = await _deliver(services, OutgoingRecord(table.topic, key.encode(), None))
    if written.error:
        raise KafkaUnavailable(f"{table.topic} did not acknowledge the delete: {written.error}")
    services.reference.remember(table.name, key, None, written.partition, written.offset)
    return Response(status_code=204)
