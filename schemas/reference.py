"""Reference tables, and streams enriched from them.

A reference table is declared as ``[reference.NAME]`` in ``streams.toml`` with typed fields and
lives in the compacted topic ``ref.NAME``: the record key is the entry's key (UTF-8), the value
a JSON object of its attributes, and a tombstone deletes the entry. ``PUT /v1/reference/NAME/KEY``
writes entries; the agents follow the topic and copy the declared attributes into the events of
every stream with an ``[streams.S.enrich]`` on that table.

Enriched fields are appended to the stream's clean schema as ``["null", T]`` with default null:
an event whose key has no entry simply carries nulls, and adding or dropping an enrichment is a
BACKWARD-compatible change of ``clean.S``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from riverbed.core.errors import FieldProblem, Invalid, pointer
from riverbed.core.topology import reference_topic

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Primitive Avro types an attribute may have (each maps to one JSON type and one ClickHouse type).
ATTRIBUTE_TYPES = frozenset({"string", "boolean", "int", "long", "float", "double"})
# Types of the event field holding the lookup key; its value is looked up as text.
KEY_TYPES = frozenset({"string", "int", "long", "enum"})
MAX_KEY_BYTES = 1024
# Only the latest entry per key matters, so the log may be compacted down to it.
REFERENCE_TOPIC_CONFIG = {"cleanup.policy": "compact"}
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class ReferenceTableError(Invalid):
    """A reference table or an enrichment is declared wrongly; the message says which part."""


class InvalidAttributes(Invalid):
    """A reference entry does not fit its table; ``problems`` name every member that does not."""

    title = "Invalid reference entry"


def coerce(value: Any, avro_type: str) -> Any:
    """``value`` as the Avro type expects it (ints are promoted for float/double).

    Raises :class:`TypeError` or :class:`ValueError` when it does not fit; None passes (every
    attribute is nullable).
    """
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if avro_type == "string" and isinstance(value, str):
        return value
    if avro_type == "boolean" and isinstance(value, bool):
        return value
    if avro_type in ("float", "double") and number:
        return float(value)
    if avro_type in _INT_RANGE and number and isinstance(value, int):
        low, high = _INT_RANGE[avro_type]
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range for {avro_type}")
        return value
    raise TypeError(f"expected {avro_type}, got {type(value).__name__}")


@dataclass(frozen=True)
class ReferenceTable:
    """One declared table: its name and ``(field, Avro type)`` pairs; plain data."""

    name: str
    fields: tuple[tuple[str, str], ...]

    @property
    def topic(self) -> str:
        return reference_topic(self.name)

    def attributes(self, body: Any) -> dict[str, Any]:
        """The entry to store for a JSON ``body``: every declared field, absent ones null.

        Raises :class:`InvalidAttributes` listing every member that is unknown or mistyped.
        """
        if not isinstance(body, dict):
            raise InvalidAttributes.at("", f"expected a JSON object, got {type(body).__name__}")
        types = dict(self.fields)
        errors = [
            FieldProblem(pointer(name), f"unknown field; {self.name} has {sorted(types)}")
            for name in body
            if name not in types
        ]
        attributes: dict[str, Any] = {}
        for name, avro_type in self.fields:
            try:
                attributes[name] = coerce(body.get(name), avro_type)
            except (TypeError, ValueError) as exc:
                errors.append(FieldProblem(pointer(name), str(exc)))
        if errors:
            raise InvalidAttributes(errors)
        return attributes


@dataclass(frozen=True)
class Enrichment:
    """Copy ``fields`` (with their types) of ``table``'s entry for the event's ``key`` field."""

    table: str
    key: str
    fields: tuple[tuple[str, str], ...]

    @property
    def schema_fields(self) -> tuple[dict[str, Any], ...]:
        """The Avro fields this enrichment adds to the clean schema: nullable, default null."""
        return tuple(
            {
                "name": name,
                "type": ["null", avro_type],
                "default": None,
                "doc": f"From reference table {self.table!r} by {self.key!r}.",
            }
            for name, avro_type in self.fields
        )

    def attributes(self, entry: Mapping[str, Any] | None) -> dict[str, Any]:
        """The event's enriched fields for a table ``entry`` (None: no entry for the key).

        A value that does not fit its declared type (written to ``ref.*`` by something other
        than the API) becomes null rather than making the event unencodable.
        """
        values: dict[str, Any] = {}
        for name, avro_type in self.fields:
            try:
                values[name] = coerce(entry.get(name), avro_type) if entry else None
            except (TypeError, ValueError):
                values[name] = None
        return values


def lookup_key(value: Any) -> str | None:
    """The table key for an event's key-field value (ints as their decimal text)."""
    if value is None or isinstance(value, bool):
        return None
    return value if isinstance(value, str) else str(value)


def _field_type(declared: Any) -> str | None:
    """``"string"`` or ``{"type": "string"}`` -> ``"string"``; anything else -> None."""
    if isinstance(declared, dict):
        declared = declared.get("type")
    return declared if declared in ATTRIBUTE_TYPES else None


def parse_reference_tables(declared: Any) -> dict[str, ReferenceTable]:
    """The ``[reference]`` section: ``{NAME: {fields: {FIELD: TYPE}}}`` -> tables."""
    if not isinstance(declared, dict):
        raise ReferenceTableError("[reference] must be a table of tables ([reference.NAME])")
    tables: dict[str, ReferenceTable] = {}
    for name, options in declared.items():
        where = f"[reference.{name}]"
        if not TABLE_NAME.match(name):
            raise ReferenceTableError(f"{where}: table names are lower-case [a-z0-9_], at most 63")
        fields = options.get("fields") if isinstance(options, dict) else None
        if not isinstance(fields, dict) or not fields:
            raise ReferenceTableError(
                f'{where}: needs fields, e.g. fields = {{ category = "string" }}'
            )
        for field, avro_type in fields.items():
            if _field_type(avro_type) is None:
                raise ReferenceTableError(
                    f"{where}: field {field!r} has type {avro_type!r}; "
                    f"supported: {sorted(ATTRIBUTE_TYPES)}"
                )
        tables[name] = ReferenceTable(
            name, tuple((field, str(_field_type(t))) for field, t in fields.items())
        )
    return tables


def parse_enrichments(
    declared: Any, tables: Mapping[str, ReferenceTable]
) -> tuple[Enrichment, ...]:
    """A stream's ``enrich``: one table (``[streams.S.enrich]``) or several (``[[...]]``)."""
    items = [declared] if isinstance(declared, dict) else declared
    if not isinstance(items, list):
        raise ReferenceTableError("'enrich' must be a table: table, key and fields")
    enrichments = []
    for index, item in enumerate(items):
        where = "enrich" if isinstance(declared, dict) else f"enrich[{index}]"
        if isinstance(item, Enrichment):
            enrichments.append(item)
            continue
        if not isinstance(item, dict) or set(item) != {"table", "key", "fields"}:
            raise ReferenceTableError(f"{where} needs exactly 'table', 'key' and 'fields'")
        table = tables.get(item["table"])
        if table is None:
            raise ReferenceTableError(
                f"{where}: no reference table {item['table']!r} "
                f"(declared: {sorted(tables)}; add [reference.{item['table']}])"
            )
        wanted = item["fields"]
        if not isinstance(wanted, list) or not wanted:
            raise ReferenceTableError(f"{where}.fields must be a non-empty list of field names")
        types = dict(table.fields)
        unknown = [name for name in wanted if name not in types]
        if unknown:
            raise ReferenceTableError(
                f"{where}: {unknown} are not fields of {table.name!r} (it has {sorted(types)})"
            )
        enrichments.append(
            Enrichment(table.name, item["key"], tuple((name, types[name]) for name in wanted))
        )
    return tuple(enrichments)


def _base(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        avro_type = branches[0] if len(branches) == 1 else avro_type
    return avro_type.get("type") if isinstance(avro_type, dict) else avro_type


def check_enrichments(enrichments: Sequence[Enrichment], schema: Mapping[str, Any]) -> None:
    """Raise :class:`ReferenceTableError` if a key is not a usable field of the stream or an
    added field would collide with one (``schema``: the clean schema's fields without these).
    """
    added: set[str] = set()
    for index, enrichment in enumerate(enrichments):
        where = "enrich" if len(enrichments) == 1 else f"enrich[{index}]"
        field = schema.get(enrichment.key)
        if field is None:
            raise ReferenceTableError(
                f"{where}: key {enrichment.key!r} is not a field of the stream"
            )
        if _base(field["type"]) not in KEY_TYPES:
            raise ReferenceTableError(
                f"{where}: key field {enrichment.key!r} must be one of {sorted(KEY_TYPES)}"
            )
        for name, _ in enrichment.fields:
            if name in schema or name in added:
                raise ReferenceTableError(
                    f"{where}: enriched field {name!r} would collide with a field of the same "
                    "name already in the event"
                )
            added.add(name)
