"""``streams.toml`` as typed declarations: what may be written there, checked before anything
is built from it.

A misspelt setting (``group-by``, ``windows_seconds``) used to be ignored without a word; now
every unknown or mistyped setting is reported at its JSON Pointer (``/streams/clicks/key``),
all of them at once. What depends on more than one declaration (a key field that is not in
the schema, a route over an unknown field) is checked afterwards by ``schemas.catalog``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from riverbed.core.errors import FieldProblem, pointer


class Declaration(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RouteDeclaration(Declaration):
    """``[[streams.S.routes]]``: clean records matching ``when`` are also written to ``topic``."""

    when: str
    topic: str


class EnrichDeclaration(Declaration):
    """``[streams.S.enrich]``: copy ``fields`` of the ``table`` entry named by field ``key``."""

    table: str
    key: str
    fields: list[str] = Field(min_length=1)


class StreamDeclaration(Declaration):
    """``[streams.NAME]``."""

    key: str = Field(description="the field whose value keys (partitions) the records")
    schema_file: str | None = Field(default=None, alias="schema")
    time_field: str | None = None
    group_by: str | None = None
    window_seconds: int | None = Field(default=None, gt=0, le=86_400)
    retention_ms: int | None = Field(default=None, gt=0)
    routes: list[RouteDeclaration] = Field(default_factory=list)
    enrich: EnrichDeclaration | list[EnrichDeclaration] = Field(default_factory=list)


class ReferenceDeclaration(Declaration):
    """``[reference.NAME]``: ``fields = { FIELD = "type" }``."""

    fields: dict[str, str] = Field(min_length=1)


class CatalogDeclaration(Declaration):
    """The whole ``streams.toml``."""

    streams: dict[str, StreamDeclaration] = Field(default_factory=dict)
    reference: dict[str, ReferenceDeclaration] = Field(default_factory=dict)


UNION_BRANCHES = ("EnrichDeclaration", "list[EnrichDeclaration]")
WRONG_BRANCH = ("list_type", "model_type", "dict_type", "model_attributes_type")


def problems_of(exc: ValidationError) -> list[FieldProblem]:
    """pydantic's errors as problems at JSON Pointers, in words a catalog's author uses."""
    problems = []
    for error in exc.errors():
        # enrich is one table or a list of them: pydantic tries both and reports both. The
        # branch that does not fit the shape written ("not a list", "not a table") is noise.
        if set(error["loc"]) & set(UNION_BRANCHES) and error["type"] in WRONG_BRANCH:
            continue
        loc = [part for part in error["loc"] if part not in UNION_BRANCHES]
        name = loc[-1] if loc else ""
        if error["type"] == "missing":
            message = f"{name!r} is required"
        elif error["type"] == "extra_forbidden":
            message = f"unknown setting {name!r}"
        else:
            message = error["msg"]
        problems.append(FieldProblem(pointer(*loc), message))
    return problems


def parse_catalog(document: Any) -> CatalogDeclaration:
    """Raise ``ValidationError`` (see :func:`problems_of`) unless ``document`` is well formed."""
    return CatalogDeclaration.model_validate(document)
