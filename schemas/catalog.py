"""The stream catalog: which streams exist, their Avro schemas and how they are keyed.

A stream is declared by a ``[streams.NAME]`` table in ``streams.toml`` and a ``NAME.avsc`` file.
The producer-facing schema is the user's; Riverbed derives the schemas of the topics it writes
(``events.*``, ``clean.*``) by appending system fields, so analysts always find ``event_id``,
``event_time``, ``ingested_at`` and ``processed_at`` in every table. A stream may also declare
routing rules (:mod:`schemas.routes`) and enrichment from reference tables
(:mod:`schemas.reference`, declared as ``[reference.NAME]`` in the same file).
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from riverbed.core.errors import FieldProblem, Invalid, NotFound, join_pointer, pointer, summarize
from riverbed.core.topology import (
    clean_topic,
    dlq_topic,
    events_topic,
)
from schemas.declarations import StreamDeclaration, parse_catalog, problems_of
from schemas.reference import (
    Enrichment,
    ReferenceTable,
    ReferenceTableError,
    check_enrichments,
    parse_enrichments,
    parse_reference_tables,
)
from schemas.routes import Route, RouteError, check_routes, parse_routes

BUNDLED_DIR = Path(__file__).resolve().parent
STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

TIMESTAMP_MILLIS: dict[str, str] = {"type": "long", "logicalType": "timestamp-millis"}
EVENT_ID_FIELD = "event_id"
SYSTEM_INGEST_FIELDS = (
    {"name": EVENT_ID_FIELD, "type": "string", "doc": "Client-supplied or generated id."},
    {"name": "ingested_at", "type": TIMESTAMP_MILLIS, "doc": "When the API accepted it."},
)
SYSTEM_CLEAN_FIELDS = (
    {"name": "event_time", "type": TIMESTAMP_MILLIS, "doc": "time_field, else ingested_at."},
    {"name": "processed_at", "type": TIMESTAMP_MILLIS, "doc": "When the agent enriched it."},
)
RESERVED_FIELDS = frozenset(f["name"] for f in SYSTEM_INGEST_FIELDS + SYSTEM_CLEAN_FIELDS)
NUMERIC_TYPES = frozenset({"int", "long", "float", "double"})


class CatalogError(Invalid):
    """The stream catalog or one of its schemas is malformed; the message names the file."""

    title = "Invalid stream"


class StreamNotFound(NotFound):
    """No stream of that name is declared."""

    title = "Unknown stream"

    def __init__(self, stream: str) -> None:
        super().__init__(f"no stream named {stream!r}; GET /v1/streams lists them")
        self.stream = stream


def _with_fields(schema: dict[str, Any], extra: tuple[dict[str, Any], ...], suffix: str) -> dict:
    derived = copy.deepcopy(schema)
    present = {f["name"] for f in derived["fields"]}
    derived["fields"].extend(copy.deepcopy(f) for f in extra if f["name"] not in present)
    derived["name"] = f"{schema['name']}{suffix}"
    return derived


def _non_null(avro_type: Any) -> Any:
    """The non-null branch of a ``["null", T]`` union, else the type itself."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        return branches[0] if len(branches) == 1 else avro_type
    return avro_type


def base_type(avro_type: Any) -> Any:
    """The Avro type name of a field, looking through a nullable union and logical types."""
    avro_type = _non_null(avro_type)
    return avro_type.get("type") if isinstance(avro_type, dict) else avro_type


def _enrichment(data: Enrichment | dict[str, Any]) -> Enrichment:
    if isinstance(data, Enrichment):
        return data
    fields = tuple((str(name), str(avro_type)) for name, avro_type in data["fields"])
    return Enrichment(data["table"], data["key"], fields)


@dataclass(frozen=True)
class StreamSpec:
    """One declared stream; pure data, safe to share between processes."""

    name: str
    schema: dict[str, Any]
    key_field: str
    time_field: str | None = None
    group_by: str | None = None
    window_seconds: int | None = None
    retention_ms: int | None = None
    field_names: tuple[str, ...] = field(default=(), compare=False)
    routes: tuple[Route, ...] = ()
    enrich: tuple[Enrichment, ...] = ()

    def __post_init__(self) -> None:
        # Specs read back from JSON (the live catalog) carry plain lists and dicts here.
        object.__setattr__(self, "routes", parse_routes(list(self.routes)))
        object.__setattr__(self, "enrich", tuple(_enrichment(e) for e in self.enrich))

    @property
    def ingest_schema(self) -> dict[str, Any]:
        """Schema of ``events.{stream}``: the user's fields plus id and ingest time."""
        return _with_fields(self.schema, SYSTEM_INGEST_FIELDS, "Event")

    @property
    def clean_schema(self) -> dict[str, Any]:
        """Schema of ``clean.{stream}``: the ingest schema plus event and processing time, then
        the enriched fields (nullable, default null)."""
        enriched = tuple(f for e in self.enrich for f in e.schema_fields)
        return _with_fields(self.ingest_schema, SYSTEM_CLEAN_FIELDS + enriched, "Clean")

    @property
    def route_topics(self) -> list[str]:
        """Topics the stream's routing rules write to, each once."""
        return list(dict.fromkeys(r.topic for r in self.routes))

    @cached_property
    def numeric_fields(self) -> list[str]:
        """User fields the windowed metrics aggregate (the time field is not a measure).

        Cached: the flow asks for every record, and rebuilding it cost 18 % of the flow's time.
        """
        return [
            f["name"]
            for f in self.schema["fields"]
            if base_type(f["type"]) in NUMERIC_TYPES
            and f["name"] != self.time_field
            and not (
                isinstance(_non_null(f["type"]), dict) and "logicalType" in _non_null(f["type"])
            )
        ]

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key_field": self.key_field,
            "time_field": self.time_field,
            "group_by": self.group_by,
            "window_seconds": self.window_seconds,
            "retention_ms": self.retention_ms,
            "topics": {
                "events": events_topic(self.name),
                "clean": clean_topic(self.name),
                "dlq": dlq_topic(self.name),
            },
            "schema": self.schema,
            "routes": [{"when": r.when, "topic": r.topic} for r in self.routes],
            "enrich": [
                {"table": e.table, "key": e.key, "fields": [n for n, _ in e.fields]}
                for e in self.enrich
            ],
        }


AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_spec(spec: StreamSpec, where: str) -> None:
    """Raise :class:`CatalogError` naming every flaw of a declaration, each at its pointer in
    the ``POST /v1/streams`` body (``/schema/fields/2/name``, ``/key_field``); ``where`` says
    which declaration in the detail."""
    problems = _schema_problems(spec.schema)
    if problems:  # the rest reads the fields, which are not there to read
        raise CatalogError(problems, f"{where}: {summarize(problems)}")
    names = {f["name"]: f for f in spec.schema["fields"]}
    problems += _field_reference_problems(spec, names)
    unenriched = _with_fields(spec.ingest_schema, SYSTEM_CLEAN_FIELDS, "Clean")["fields"]
    try:
        check_enrichments(spec.enrich, {f["name"]: f for f in unenriched})
    except ReferenceTableError as exc:
        problems += exc.under(pointer("enrich"))
    try:
        if not problems:  # the clean schema needs a well-formed declaration
            check_routes(spec.routes, [f["name"] for f in spec.clean_schema["fields"]])
    except RouteError as exc:
        problems += exc.under(pointer("routes"))
    if problems:
        raise CatalogError(problems, f"{where}: {summarize(problems)}")


def _schema_problems(schema: Any) -> list[FieldProblem]:
    fields = schema.get("fields") if isinstance(schema, dict) else None
    if schema.get("type") != "record" or not isinstance(fields, list) or not fields:
        return [FieldProblem(pointer("schema"), "the schema must be an Avro record with fields")]
    problems = []
    for index, f in enumerate(fields):
        at = pointer("schema", "fields", index)
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or "type" not in f:
            problems.append(FieldProblem(at, f"fields[{index}] needs a 'name' and a 'type'"))
        elif not AVRO_NAME.match(f["name"]):
            problems.append(
                FieldProblem(
                    join_pointer(at, "name"),
                    f"field name {f['name']!r} is not an Avro name ([A-Za-z_][A-Za-z0-9_]*)",
                )
            )
        elif f["name"] in RESERVED_FIELDS:
            problems.append(
                FieldProblem(
                    join_pointer(at, "name"),
                    f"fields [{f['name']!r}] are reserved for Riverbed",
                )
            )
    return problems


def _field_reference_problems(spec: StreamSpec, names: dict[str, Any]) -> list[FieldProblem]:
    problems = []
    if spec.key_field not in names:
        problems.append(
            FieldProblem(
                pointer("key_field"),
                f"key field {spec.key_field!r} is not a field of the schema",
            )
        )
    for label, name in (("time_field", spec.time_field), ("group_by", spec.group_by)):
        if name is not None and name not in names:
            problems.append(
                FieldProblem(pointer(label), f"{label} {name!r} is not a field of the schema")
            )
    if spec.time_field is not None and spec.time_field in names:
        t = _non_null(names[spec.time_field]["type"])
        if not (isinstance(t, dict) and t.get("logicalType") == "timestamp-millis"):
            problems.append(
                FieldProblem(
                    pointer("time_field"),
                    f"time_field {spec.time_field!r} must be timestamp-millis",
                )
            )
    return problems


def _read_catalog_file(directory: Path) -> tuple[Path, dict[str, Any]]:
    catalog_file = directory / "streams.toml"
    try:
        return catalog_file, tomllib.loads(catalog_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{catalog_file}: {exc}") from exc


def load_reference_tables(directory: Path | None = None) -> dict[str, ReferenceTable]:
    """The ``[reference.*]`` tables of ``streams.toml``; raise :class:`CatalogError` on a flaw."""
    catalog_file, declared = _read_catalog_file(directory or BUNDLED_DIR)
    try:
        return parse_reference_tables(parse_catalog(declared).model_dump()["reference"])
    except ValidationError as exc:
        problems = problems_of(exc)
        raise CatalogError(problems, f"{catalog_file}: {summarize(problems)}") from None
    except ReferenceTableError as exc:
        raise CatalogError(f"{catalog_file} {exc}") from None


def load_catalog(directory: Path | None = None) -> dict[str, StreamSpec]:
    """Read ``streams.toml`` and its ``.avsc`` files; raise :class:`CatalogError` on any flaw,
    naming every unknown or mistyped setting at once."""
    directory = directory or BUNDLED_DIR
    catalog_file, document = _read_catalog_file(directory)
    try:
        declared = parse_catalog(document)
    except ValidationError as exc:
        problems = problems_of(exc)
        raise CatalogError(problems, f"{catalog_file}: {summarize(problems)}") from None
    tables = load_reference_tables(directory)
    return {
        name: _stream_spec(directory, catalog_file, name, options, tables)
        for name, options in declared.streams.items()
    }


def _stream_spec(
    directory: Path,
    catalog_file: Path,
    name: str,
    options: StreamDeclaration,
    tables: dict[str, ReferenceTable],
) -> StreamSpec:
    where = f"{catalog_file} [streams.{name}]"
    if not STREAM_NAME.match(name):
        raise CatalogError(f"{where}: stream names are lower-case [a-z0-9_], at most 63")
    schema_file = directory / (options.schema_file or f"{name}.avsc")
    try:
        schema = json.loads(schema_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{schema_file}: {exc}") from exc
    enrich = options.enrich
    declared_enrich: Any = (
        [e.model_dump() for e in enrich] if isinstance(enrich, list) else enrich.model_dump()
    )
    try:
        routes = parse_routes([route.model_dump() for route in options.routes])
        enrichments = parse_enrichments(declared_enrich, tables)
    except (RouteError, ReferenceTableError) as exc:
        raise CatalogError(f"{where}: {exc}") from None
    spec = StreamSpec(
        name=name,
        schema=schema,
        key_field=options.key,
        time_field=options.time_field,
        group_by=options.group_by,
        window_seconds=options.window_seconds,
        retention_ms=options.retention_ms,
        field_names=tuple(f["name"] for f in schema.get("fields", [])),
        routes=routes,
        enrich=enrichments,
    )
    check_spec(spec, where)
    return spec
