"""The OpenAPI 3.1 document at ``/openapi.json``, generated from the route table.

Every route of ``api.routes.ROUTES`` appears with its operationId, its scope (as the bearer
scheme's required role, which OpenAPI 3.1 allows, and as ``x-scope``), its parameters, its body
(from the pydantic model the handler parses with) and its answers; errors are problem+json.
Each stream's event shape is its Avro schema as JSON Schema, filled in from the live catalog.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

from pydantic import BaseModel

from api.endpoint import PUBLIC, SCOPES, Endpoint, Param
from api.models import Problem
from schemas.catalog import StreamSpec
from schemas.json_schema import avro_to_json_schema

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
REF_TEMPLATE = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"{(\w+)}")
TAGS = {
    "streams": "Declare streams and evolve their schemas",
    "events": "Post events, read them back, dead letters and reference data",
    "metrics": "Windowed metrics: built-in and declared, stored and live",
    "query": "Read-only SQL over ClickHouse",
    "registry": "Confluent-compatible schema registry",
    "identity": "Logins, users and API keys",
    "operations": "Health and readiness",
}


class _Components:
    """Collects the JSON Schemas of the models the document refers to."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE, by_alias=True)
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[model.__name__] = schema
        return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    path = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAM.findall(endpoint.path)
    ]
    return path + [_query(param) for param in endpoint.params]


def _query(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.type}
    if param.repeated:
        schema = {"type": "array", "items": schema}
    return {
        "name": param.name,
        "in": "query",
        "description": param.description,
        "schema": schema,
        **({"style": "form", "explode": True} if param.repeated else {}),
    }


def _body(endpoint: Endpoint, catalog: dict[str, StreamSpec], parts: _Components) -> Any:
    body = endpoint.body
    schema: dict[str, Any]
    if isinstance(body, type) and issubclass(body, BaseModel):
        schema = parts.ref(body)
    elif isinstance(body, dict):
        schema = body
    else:  # a function of the live catalog
        schema = cast(Callable[[dict[str, StreamSpec]], dict[str, Any]], body)(catalog)
    content = {media: {"schema": schema} for media in endpoint.body_types}
    if "application/x-ndjson" in content:
        content["application/x-ndjson"] = {"schema": {"type": "string"}}
    return {"required": True, "content": content}


#: What every route that needs a scope may answer besides its own responses.
ACCESS_RESPONSES = {
    401: "No API key, or an unknown, revoked or expired one (WWW-Authenticate says which)",
    403: "The key does not grant this route's scope, or this stream",
}


#: What any route that takes a body may answer about it, before its own checks.
BODY_RESPONSES = {
    400: "Body is not JSON",
    408: "Body not received in time",
    413: "Body too large",
    415: "Body in a media type this route does not take",
    422: "Invalid body; errors[] names every problem",
}
UNLIMITED = frozenset({"healthz", "readyz"})  # probes: not rate-limited


def common_responses(endpoint: Endpoint) -> dict[int, str]:
    """The answers the gateway gives on every route it applies to (api.routes._guarded,
    api.ratelimit, api.auth), documented once here rather than in each route's table row."""
    common: dict[int, str] = {}
    if not endpoint.open_params and not endpoint.mount:
        common[400] = "Unknown or invalid query parameter"
    if endpoint.body is not None:
        common.update(BODY_RESPONSES)
    if endpoint.scope != PUBLIC:
        common.update(ACCESS_RESPONSES)
    if endpoint.name not in UNLIMITED:
        common[429] = "Over the caller's rate limit; retry after Retry-After"
    return common


def _responses(endpoint: Endpoint, parts: _Components) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, description in sorted({**common_responses(endpoint), **endpoint.responses}.items()):
        if status >= 400:
            content = {"application/problem+json": {"schema": PROBLEM_REF}}
        elif status == 204:
            content = {}
        else:
            schema = parts.ref(endpoint.answer) if endpoint.answer else {}
            content = {endpoint.media: {"schema": schema}}
        answers[str(status)] = {"description": description}
        if content:
            answers[str(status)]["content"] = content
    return answers


def _operation(
    endpoint: Endpoint, catalog: dict[str, StreamSpec], parts: _Components
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.name,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "x-scope": endpoint.scope,
        "security": [] if endpoint.scope == PUBLIC else [{"bearer": [endpoint.scope]}],
        "parameters": _parameters(endpoint),
        "responses": _responses(endpoint, parts),
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.body is not None:
        operation["requestBody"] = _body(endpoint, catalog, parts)
    return operation


def build_openapi(
    catalog: dict[str, StreamSpec], endpoints: tuple[Endpoint, ...]
) -> dict[str, Any]:
    parts = _Components()
    parts.ref(Problem)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation = _operation(endpoint, catalog, parts)
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    for name, spec in sorted(catalog.items()):
        parts.schemas[name] = avro_to_json_schema(spec.schema)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Riverbed",
            "version": "0.1.0",
            "description": "Post events, query them and their windowed metrics, follow live "
            "updates over server-sent events. Errors are RFC 9457 problem+json; every problem "
            "names its place as a JSON Pointer. Each operation lists the scope it needs.",
        },
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": parts.schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`riverbed keys create`, `POST /v1/keys`) or "
                    "the access token of a login (`POST /v1/auth/login`) as the bearer token; "
                    "clients that only speak HTTP Basic (Confluent's schema-registry clients) "
                    "may send a key as the password. A login's scopes are its roles'. Scopes: "
                    + "; ".join(f"{s}: {text}" for s, text in SCOPES.items() if s != PUBLIC),
                }
            },
        },
    }
