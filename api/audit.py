"""The audit trail: every security-relevant action as an Avro event on the ``audit`` topic, which
the ClickHouse sink lands in the ``audit`` table that ``GET /v1/audit`` reads.

Which actions: every route that changes something (``Endpoint.audited``: every method but GET,
except posting events, which is data, not administration), plus ``POST /v1/query`` (reads
data: who asked what). Each records who (the key or user), what (the route's operation and
its path parameters), when, from where (address, request id), and how it went (success,
failure, or denied, with the status). A handler may add details (``note``), such as the name
a failed login tried.

The record is written after the action and its acknowledgement awaited, but a broker that
does not take it does not undo the action: it is logged as an error instead (the action is
done, and refusing to answer would not make it undone).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth import KeyUser, UserPrincipal
from api.endpoint import Endpoint
from api.params import int_param, time_param
from api.services import Services
from riverbed.core.kafka import AsyncProducer, OutgoingRecord
from riverbed.core.topology import AUDIT_TOPIC
from schemas import codec
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog

log = logging.getLogger(__name__)
MAX_DETAILS = 4096  # characters of details JSON kept per record
MAX_PAGE = 1000


def note(request: Request, **details: Any) -> None:
    """Add ``details`` to the audit record of this request."""
    request.state.audit = {**getattr(request.state, "audit", {}), **details}


DENIED = "denied"  # refused by authorisation, before the action was tried


def outcome_of(status: int) -> str:
    return "success" if status < 400 else "failure"


def actor_of(request: Request) -> tuple[str, str]:
    user = request.scope.get("user")
    if isinstance(user, KeyUser):
        return f"key:{user.info.prefix}", user.info.name
    if isinstance(user, UserPrincipal):
        return f"user:{user.info.id}", user.info.username
    return "anonymous", ""


async def record(
    request: Request, endpoint: Endpoint, status: int, outcome: str | None = None
) -> None:
    """Write the audit event of this request; never raises (see the module's docstring)."""
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        return  # an app without its services (in-process tests of the routing only)
    actor, actor_name = actor_of(request)
    event = audit_event(
        actor,
        actor_name,
        endpoint.name,
        "/".join(str(v) for v in request.path_params.values()),
        status,
        outcome or outcome_of(status),
        request,
        getattr(request.state, "audit", {}),
    )
    await write(AuditWriter(services.registry, services.catalog, services.producer), event)


def audit_event(
    actor: str,
    actor_name: str,
    action: str,
    target: str,
    status: int,
    outcome: str,
    request: Request,
    details: dict[str, Any],
) -> dict[str, Any]:
    """One record of the ``audit`` topic."""
    return {
        "audit_id": uuid.uuid4().hex,
        "at": time.time_ns() // 1_000_000,
        "actor": actor,
        "actor_name": actor_name,
        "action": action,
        "target": target,
        "outcome": outcome,
        "status": status,
        "source_ip": request.client.host if request.client else "",
        "request_id": str(getattr(request.state, "request_id", "")),
        "details": json.dumps(details, default=str)[:MAX_DETAILS],
    }


@dataclass(frozen=True)
class AuditWriter:
    """What writing a record takes: the schema to encode it with, and a producer."""

    registry: SchemaRegistry
    catalog: StreamCatalog
    producer: AsyncProducer


async def write(writer: AuditWriter, event: dict[str, Any]) -> None:
    """Produce ``event`` and await its acknowledgement; never raises: a record the broker does
    not take is logged as an error."""
    try:
        value = codec.encode(writer.registry, writer.catalog.audit_id, event)
        [error] = await writer.producer.produce([OutgoingRecord(AUDIT_TOPIC, None, value)])
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error:
        log.error(
            "audit record of %s by %s (%s) not written: %s",
            event["action"],
            event["actor"],
            event["status"],
            error,
        )


async def list_audit(request: Request) -> JSONResponse:
    """Newest first, filtered by actor, action and outcome, within a time range."""
    services: Services = request.app.state.services
    filters = {
        name: request.query_params[name]
        for name in ("actor", "action", "outcome")
        if name in request.query_params
    }
    limit = int_param(request, "limit", 100, 1, MAX_PAGE)
    start, end = time_param(request, "from"), time_param(request, "to")
    rows = await anyio.to_thread.run_sync(
        lambda: services.audit.page(filters, start=start, end=end, limit=limit)
    )
    return JSONResponse({"events": rows})
