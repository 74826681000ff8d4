"""What a route of the API declares: path, method, handler, name, scope, and its contract.

``api.routes`` holds the table of them; the router and ``/openapi.json`` are built from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from control.scopes import AUTHENTICATED, PUBLIC, SCOPES

__all__ = ["AUTHENTICATED", "PUBLIC", "SCOPES", "Body", "Endpoint", "Param"]


@dataclass(frozen=True)
class Param:
    """A query parameter; path parameters come from the path itself."""

    name: str
    description: str
    type: str = "string"
    repeated: bool = False


#: A request body: a model, a JSON Schema, or a function of the live stream catalog.
Body = type[BaseModel] | dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    handler: Callable[..., Any]
    name: str  # the operationId; unique
    scope: str
    summary: str
    responses: dict[int, str]  # status -> description; 4xx/5xx are problem+json
    description: str = ""
    params: tuple[Param, ...] = ()
    body: Body = None
    body_types: tuple[str, ...] = ("application/json",)
    answer: type[BaseModel] | None = None  # the success body, when it has a model
    media: str = "application/json"  # of the success body
    tag: str = "pipeline"
    mount: bool = False  # the handler is an ASGI app serving everything under ``path``
    # Takes query parameters it does not declare (the registry: Confluent's clients send
    # their own, and Confluent's registry ignores unknown ones); others refuse them.
    open_params: bool = False
    # Spans every stream but shows a caller limited to some streams only theirs; other routes
    # that span every stream refuse such a caller (``api.auth.authorize``).
    filters_streams: bool = False
    # Recorded in the audit trail (api.audit); None: every method but GET.
    audit: bool | None = None

    @property
    def audited(self) -> bool:
        return self.audit if self.audit is not None else self.method != "GET"
