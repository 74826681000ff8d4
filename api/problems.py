"""RFC 9457 problem+json: the one place errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from riverbed.core.clickhouse import ClickHouseError
from riverbed.core.kafka import KafkaUnavailable
from schemas.catalog import CatalogError, StreamNotFound
from schemas.registry import RegistryError, SchemaIncompatible
from schemas.stream_catalog import StreamExists
from sinks.ddl import UnsupportedType

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in a handler; ``extra`` members are added to the problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def invalid(title: str, errors: list[dict[str, str]]) -> Problem:
    """A 422 listing every ``{path, message}``, the first one in the detail."""
    first = errors[0]
    return Problem(
        422,
        title,
        f"{len(errors)} problems; first: {first['path']}: {first['message']}",
        errors=errors,
    )


async def json_body(request: Request, hint: str = "the body is not JSON") -> Any:
    """The request's JSON body; a 400 saying ``hint`` if it is not JSON."""
    try:
        return await request.json()
    except ValueError:
        raise Problem(400, "Malformed body", hint) from None


def problem_response(problem: Problem, instance: str) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
        **problem.extra,
    }
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


async def handle_stream_not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StreamNotFound)
    return problem_response(
        Problem(
            404, "Unknown stream", f"no stream named {exc.stream!r}; GET /v1/streams lists them"
        ),
        request.url.path,
    )


async def handle_kafka_unavailable(request: Request, exc: Exception) -> Response:
    return problem_response(
        Problem(
            503,
            "Broker unavailable",
            f"Kafka did not acknowledge the events: {exc}",
            headers={"Retry-After": "5"},
        ),
        request.url.path,
    )


async def handle_clickhouse_error(request: Request, exc: Exception) -> Response:
    if "TIMEOUT_EXCEEDED" in str(exc):
        problem = Problem(504, "Query timed out", str(exc)[:2000])
    elif "MEMORY_LIMIT_EXCEEDED" in str(exc):
        problem = Problem(413, "Query too large", str(exc)[:2000])
    else:
        problem = Problem(400, "Query failed", str(exc)[:2000])
    return problem_response(problem, request.url.path)


async def handle_registry_error(request: Request, exc: Exception) -> Response:
    """Confluent's ``error_code``/``message`` for its clients, problem+json for everyone else."""
    assert isinstance(exc, RegistryError)
    extra: dict[str, Any] = {"error_code": exc.code, "message": str(exc)}
    if isinstance(exc, SchemaIncompatible):
        extra["level"] = exc.level
        extra["errors"] = [p.to_dict() for p in exc.problems]
    title = {404: "Not found", 409: "Incompatible schema", 422: "Invalid schema"}.get(
        exc.status, "Registry error"
    )
    return problem_response(Problem(exc.status, title, str(exc), **extra), request.url.path)


async def handle_catalog_error(request: Request, exc: Exception) -> Response:
    status = 409 if isinstance(exc, StreamExists) else 422
    title = "Stream exists" if status == 409 else "Invalid stream"
    detail = f"stream {exc} already exists" if status == 409 else str(exc)
    return problem_response(Problem(status, title, detail), request.url.path)


async def handle_redis_error(request: Request, exc: Exception) -> Response:
    return problem_response(
        Problem(
            503, "Redis unavailable", f"{type(exc).__name__}: {exc}", headers={"Retry-After": "5"}
        ),
        request.url.path,
    )


async def handle_unsupported_type(request: Request, exc: Exception) -> Response:
    return problem_response(Problem(422, "Invalid stream", str(exc)), request.url.path)


async def handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem_response(
        Problem(exc.status_code, "HTTP error", str(exc.detail)), request.url.path
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        Problem(500, "Internal error", f"{type(exc).__name__}: {exc}"), request.url.path
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    Problem: handle_problem,
    StreamNotFound: handle_stream_not_found,
    KafkaUnavailable: handle_kafka_unavailable,
    ClickHouseError: handle_clickhouse_error,
    RegistryError: handle_registry_error,
    redis.RedisError: handle_redis_error,
    UnsupportedType: handle_unsupported_type,
    StreamExists: handle_catalog_error,
    CatalogError: handle_catalog_error,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}
