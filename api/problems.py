"""RFC 9457 problem+json: the one place errors become HTTP responses.

Every error Riverbed raises on purpose derives from ``riverbed.core.errors.RiverbedError`` and
carries its own status, title, detail, headers and extra members, so one handler renders them
all; handlers raise domain errors and never build error responses themselves. ``Problem`` is
the HTTP layer's own member of the tree, for what only HTTP knows (a body too large, a bad
query parameter). Anything else is a bug: logged, and answered with a 500 that names its type.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from riverbed.core.errors import RiverbedError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


class Problem(RiverbedError):
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
        self._headers = headers or {}
        self._extra = extra

    @property
    def type(self) -> str:
        """Per kind of HTTP problem, from its title: ``urn:riverbed:problem:body-too-large``."""
        slug = "-".join(self.title.lower().replace("-", " ").split())
        return f"urn:riverbed:problem:{slug}"

    def extra(self) -> dict[str, Any]:
        return self._extra

    def headers(self) -> dict[str, str]:
        return self._headers


def problem_response(error: RiverbedError, instance: str) -> JSONResponse:
    body = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": instance,
        **error.extra(),
    }
    return JSONResponse(
        body, status_code=error.status, headers=error.headers(), media_type=PROBLEM_JSON
    )


async def handle_riverbed_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RiverbedError)
    return problem_response(exc, request.url.path)


async def handle_redis_error(request: Request, exc: Exception) -> Response:
    problem = Problem(
        503, "Redis unavailable", f"{type(exc).__name__}: {exc}", headers={"Retry-After": "5"}
    )
    return problem_response(problem, request.url.path)


async def handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; RFC 9110 wants them all.
        headers["Allow"] = ", ".join(_allowed_methods(request))
    problem = Problem(exc.status_code, "HTTP error", str(exc.detail), headers=headers)
    return problem_response(problem, request.url.path)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", "-")
    log.exception(
        "unhandled error on %s %s (request %s)", request.method, request.url.path, request_id
    )
    problem = Problem(500, "Internal error", f"{type(exc).__name__}: {exc}")
    return problem_response(problem, request.url.path)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    RiverbedError: handle_riverbed_error,
    redis.RedisError: handle_redis_error,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}
