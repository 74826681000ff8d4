"""Request and response bodies of the API as pydantic models.

Handlers parse with them and ``/openapi.json`` describes them from the same classes, so the
documentation cannot drift from what a route accepts. Bodies whose shape is the data itself
(events follow their stream's Avro schema) are described from the live catalog instead.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from starlette.requests import Request

from api.bodies import json_body
from riverbed.core.errors import FieldProblem, Invalid, pointer
from schemas.catalog import STREAM_NAME

Model = TypeVar("Model", bound=BaseModel)


async def read_model(request: Request, model: type[Model]) -> Model:
    """The JSON body as ``model``: a 400 if it is not JSON, a 422 naming every problem."""
    payload = await json_body(request)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = [FieldProblem(pointer(*e["loc"]), e["msg"]) for e in exc.errors()]
        raise Invalid(problems) from None


class NewStream(BaseModel):
    """``POST /v1/streams``: a stream declared at run time, as one entry of streams.toml.

    Unknown members are refused (422 naming each), never dropped: ``routes`` and ``enrich``
    are declared in streams.toml only, so far. ``key`` (the file's name) and ``key_field``
    are the same setting."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=STREAM_NAME.pattern)
    schema_: dict[str, Any] = Field(alias="schema", description="Avro record schema")
    key_field: str = Field(
        validation_alias=AliasChoices("key_field", "key"),
        description="the field events are partitioned by (streams.toml calls it key)",
    )
    time_field: str | None = Field(default=None, description="a timestamp-millis field")
    group_by: str | None = None
    window_seconds: int | None = Field(default=None, gt=0, le=86_400)
    retention_ms: int | None = Field(default=None, gt=0)


class NewSchema(BaseModel):
    """``PUT /v1/streams/{stream}/schema``: the next version of a stream's schema."""

    schema_: dict[str, Any] = Field(alias="schema")


PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class SqlQuery(BaseModel):
    """``POST /v1/query``: one read-only statement."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(
        max_length=100_000, description="SELECT, WITH, SHOW, DESCRIBE, EXPLAIN or EXISTS"
    )
    params: dict[str, str | int | float | bool | list[str | int | float]] | None = Field(
        default=None,
        max_length=100,
        description="Values of the query's {name:Type} placeholders, bound by ClickHouse "
        "(data, never SQL)",
    )
    format: Literal["json", "csv", "ndjson", "parquet"] = Field(
        default="json",
        description="json: columns and rows, at most the row limit (truncated says so); csv "
        "(with a header), ndjson, parquet: every row, streamed as a download",
    )

    @model_validator(mode="after")
    def _names_are_identifiers(self) -> SqlQuery:
        for name, value in (self.params or {}).items():
            if not PARAM_NAME.match(name):
                raise ValueError(f"parameter name {name[:64]!r} is not an identifier")
            if isinstance(value, str) and len(value) > 100_000:
                raise ValueError(f"parameter {name} is longer than 100,000 characters")
        return self


class ReplayRequest(BaseModel):
    """``POST /v1/streams/{stream}/dlq/replay``: which dead letters to put back."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = Field(
        default=None, max_length=10_000, description="dlq_id values to replay"
    )
    all: bool = Field(default=False, description="replay every letter not replayed yet")

    @model_validator(mode="after")
    def _names_what_to_replay(self) -> ReplayRequest:
        if self.ids is None and not self.all:
            raise ValueError('send {"ids": ["<dlq_id>", ...]} or {"all": true}')
        return self


class RegisterSchema(BaseModel):
    """Confluent registry: a schema to register or look up."""

    model_config = ConfigDict(extra="allow")

    schema_: str = Field(alias="schema", description="the Avro schema as a JSON string")
    schemaType: str = "AVRO"


class CompatibilityConfig(BaseModel):
    """Confluent registry: a compatibility level."""

    compatibility: str = Field(description="BACKWARD, FORWARD, FULL, *_TRANSITIVE or NONE")


class Accepted(BaseModel):
    """What ``POST /v1/streams/{stream}/events`` answers once Kafka acknowledged."""

    accepted: int
    rejected: int
    event_ids: list[str]
    results: list[dict[str, Any]] = Field(
        default_factory=list,
        description=(
            "One per posted event, in order: {index, status, event_id}; status is accepted, "
            "duplicate (a later copy of an event_id in this request: first_index names the "
            "first) or rejected (errors[] names every problem). An accepted event may still "
            "be dead-lettered by a later stage: GET /v1/streams/{stream}/dlq finds it by id."
        ),
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="207 only: one {index, event_id, path, message} per problem"
    )


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str = Field(description="urn:riverbed:problem:<kind>, stable per kind of problem")
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="every problem found: {path (a JSON Pointer), message}"
    )


class Login(BaseModel):
    """``POST /v1/auth/login``."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    """``POST /v1/auth/refresh`` and ``/v1/auth/logout``: the refresh token of a login."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    """A login: an access token to send as ``Authorization: Bearer``, and the refresh token
    that gets the next one (each refresh token works once)."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int = Field(description="seconds the access token is valid")
    refresh_token: str


class PasswordChange(BaseModel):
    """``PUT /v1/me/password``."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


class NewUser(BaseModel):
    """``POST /v1/users``: an account an admin creates (registration is admin-only)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=12, max_length=1024)
    roles: list[str] = Field(max_length=10, description="admin, analyst, producer or viewer")


class UserChange(BaseModel):
    """``PATCH /v1/users/{username}``: new roles, or disable/enable the account."""

    model_config = ConfigDict(extra="forbid")

    roles: list[str] | None = Field(default=None, max_length=10)
    disabled: bool | None = None


class NewKey(BaseModel):
    """``POST /v1/keys``: an API key for a producer or a service (shown once)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(default_factory=list, max_length=10)
    scopes: list[str] = Field(default_factory=list, max_length=50)
    streams: list[str] | None = Field(
        default=None, max_length=1000, description="limit the key to these streams"
    )
    expires_days: int | None = Field(default=None, gt=0, le=3650)
