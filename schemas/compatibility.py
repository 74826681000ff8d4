"""Avro schema-resolution compatibility, checked the way a Confluent-compatible registry does.

A new schema version is only safe to register if consumers and producers on other versions can
still decode each other's data, so this module answers "can data written with W be read with R?"
under the Avro 1.11 "Schema Resolution" rules, statically, over plain JSON schemas (dict, list,
str as parsed from ``.avsc``), and names every reason it cannot.

Paths: every ``Incompatibility.path`` is a JSON-pointer-like location in the **reader** schema.
``/`` is the root; ``/fields/<name>`` a record field (by the reader's field name, not position,
so it survives reordering); ``/fields/<name>/type`` its type; ``/items`` and ``/values`` array and
map contents; ``/<i>`` the reader union branch that was chosen for the writer's data; and
``/name``, ``/symbols``, ``/size`` the attribute that conflicts. Named-type references are
followed as if the definition were inlined. In BACKWARD checks the reader is the new schema, in
FORWARD checks it is the registered version the message names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from riverbed.core.errors import Invalid

MODES = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED_KINDS = frozenset({"record", "enum", "fixed"})
# Values of "type" that define a schema in place; any other string there is a name reference.
KINDS = PRIMITIVES | NAMED_KINDS | {"error", "array", "map"}
# Writer type -> reader types it may be promoted to (spec, "Schema Resolution").
PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}

READER_FIELD_MISSING_DEFAULT_VALUE = "READER_FIELD_MISSING_DEFAULT_VALUE"
TYPE_MISMATCH = "TYPE_MISMATCH"
MISSING_UNION_BRANCH = "MISSING_UNION_BRANCH"
MISSING_ENUM_SYMBOLS = "MISSING_ENUM_SYMBOLS"
NAME_MISMATCH = "NAME_MISMATCH"
FIXED_SIZE_MISMATCH = "FIXED_SIZE_MISMATCH"
# Not one of Avro's/Confluent's six: they ignore logical types, the spec does not.
DECIMAL_MISMATCH = "DECIMAL_MISMATCH"


class UnknownCompatibilityMode(Invalid):
    """The mode is not one of ``MODES``."""


class InvalidSchema(Invalid):
    """A schema is not valid Avro (a dangling name reference, a record without fields, ...)."""


@dataclass(frozen=True)
class Incompatibility:
    """One reason data cannot be resolved: a rule id, a reader-schema path and a fix-it sentence."""

    rule: str
    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "path": self.path, "message": self.message}


class _Node(NamedTuple):
    """A position in a schema with the namespace that qualifies short names written inside it."""

    schema: Any
    namespace: str


def _problem(rule: str, path: str, message: str) -> Incompatibility:
    return Incompatibility(rule, path or "/", message)


def _kind(schema: Any) -> str:
    """The Avro type of a resolved (non-reference) schema; logical types report their base type."""
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    kind = schema["type"]
    return "record" if kind == "error" else str(kind)


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _describe(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    kind = _kind(schema)
    return f"{kind} '{schema['name']}'" if kind in NAMED_KINDS else kind


def _require(schema: dict[str, Any], key: str, kind: type) -> Any:
    value = schema.get(key)
    if not isinstance(value, kind):
        raise InvalidSchema(f"{_kind(schema)} schema needs a {kind.__name__} '{key}': {schema}")
    return value


class _NamedTypes:
    """The record/enum/fixed definitions of one schema, by full name, to resolve references.

    Names are registered per schema, because the reader and the writer may both define ``Order``
    differently; that is exactly what is being compared.
    """

    def __init__(self, schema: Any) -> None:
        self._definitions: dict[str, _Node] = {}
        self._definition_of: dict[int, _Node] = {}
        self._collect(schema, "")

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if isinstance(kind, list | dict):
                self._collect(kind, namespace)
            elif kind in NAMED_KINDS or kind == "error":
                self._define(schema, namespace)
            elif kind == "array":
                self._collect(_require(schema, "items", object), namespace)
            elif kind == "map":
                self._collect(_require(schema, "values", object), namespace)
            elif not isinstance(kind, str):
                raise InvalidSchema(f"schema object without a 'type': {schema}")
        elif not isinstance(schema, str):
            raise InvalidSchema(f"not an Avro schema: {schema!r}")

    def _define(self, schema: dict[str, Any], enclosing: str) -> None:
        own = schema.get("namespace", enclosing)
        fullname = _fullname(_require(schema, "name", str), own or "")
        if fullname in self._definitions:
            raise InvalidSchema(f"'{fullname}' is defined twice")
        namespace = fullname.rpartition(".")[0]
        self._definitions[fullname] = self._definition_of[id(schema)] = _Node(schema, namespace)
        kind = _kind(schema)
        if kind == "record":
            for field in _require(schema, "fields", list):
                if not isinstance(field, dict) or not isinstance(field.get("name"), str):
                    raise InvalidSchema(f"record '{fullname}' has a field without a name: {field}")
                self._collect(field.get("type"), namespace)
        elif kind == "enum":
            _require(schema, "symbols", list)
        else:
            _require(schema, "size", int)

    def resolve(self, node: _Node) -> _Node:
        """The definition a reference or ``{"type": ...}`` wrapper stands for; others unchanged."""
        schema = node.schema
        if isinstance(schema, dict):
            if schema["type"] not in KINDS:
                return self.resolve(_Node(schema["type"], node.namespace))
            # A definition's own namespace, not the enclosing one, qualifies the names inside it.
            return self._definition_of.get(id(schema), node)
        if not isinstance(schema, str) or schema in PRIMITIVES:
            return node
        for candidate in (_fullname(schema, node.namespace), schema):
            if candidate in self._definitions:
                return self._definitions[candidate]
        raise InvalidSchema(f"unknown type name '{schema}' (namespace '{node.namespace}')")


def _names_match(reader: _Node, writer: _Node) -> bool:
    """Named types match on the unqualified name, or when a reader alias is the writer's full name.

    Aliases are qualified by the reader's namespace (spec: "Aliases"), as the Java implementation
    and so Confluent's registry do; fastavro also accepts an unqualified alias in any namespace.
    """
    writer_name = _fullname(writer.schema["name"], writer.namespace)
    if _short(reader.schema["name"]) == _short(writer_name):
        return True
    aliases = reader.schema.get("aliases", [])
    return writer_name in {_fullname(alias, reader.namespace) for alias in aliases}


def _decimal(schema: Any) -> tuple[int, int] | None:
    """(precision, scale) of a valid decimal; invalid logical types are ignored, per the spec."""
    if not isinstance(schema, dict) or schema.get("logicalType") != "decimal":
        return None
    precision, scale = schema.get("precision"), schema.get("scale", 0)
    if not isinstance(precision, int) or not isinstance(scale, int):
        return None
    return (precision, scale) if 0 <= scale <= precision and precision > 0 else None


def _writer_field(
    field: dict[str, Any], writer_fields: dict[str, dict[str, Any]], reader_names: set[str]
) -> dict[str, Any] | None:
    """The writer field a reader field reads: same name first, else one of the field's aliases.

    A writer field claimed by a reader field of the same name is not also read through another
    field's alias: fastavro reads each writer field into one reader field, exact name first.
    """
    if field["name"] in writer_fields:
        return writer_fields[field["name"]]
    for alias in field.get("aliases", []):
        if alias in writer_fields and alias not in reader_names:
            return writer_fields[alias]
    return None


class _Resolution:
    """One reader-against-writer walk; memoises named-type pairs so recursive schemas terminate.

    A pair already on the stack is assumed compatible (coinduction): any real conflict inside it
    is reported by the frame that is still checking it.
    """

    def __init__(self, reader: Any, writer: Any) -> None:
        self._reader_types = _NamedTypes(reader)
        self._writer_types = _NamedTypes(writer)
        self._memo: dict[tuple[int, int], list[Incompatibility] | None] = {}

    def check(self, reader: _Node, writer: _Node, path: str) -> list[Incompatibility]:
        reader = self._reader_types.resolve(reader)
        writer = self._writer_types.resolve(writer)
        if isinstance(writer.schema, list):
            return [
                problem
                for branch in writer.schema
                for problem in self.check(reader, _Node(branch, writer.namespace), path)
            ]
        if isinstance(reader.schema, list):
            return self._reader_union(reader, writer, path)
        reader_kind, writer_kind = _kind(reader.schema), _kind(writer.schema)
        if reader_kind != writer_kind and reader_kind not in PROMOTIONS.get(writer_kind, ()):
            return [_type_mismatch(reader.schema, writer.schema, path)]
        if reader_kind in NAMED_KINDS:
            return self._memoised(reader, writer, path)
        if reader_kind in ("array", "map"):
            key = "items" if reader_kind == "array" else "values"
            return self.check(
                _Node(reader.schema[key], reader.namespace),
                _Node(writer.schema[key], writer.namespace),
                f"{path}/{key}",
            )
        return _decimal_problems(reader.schema, writer.schema, path)

    def _reader_union(self, reader: _Node, writer: _Node, path: str) -> list[Incompatibility]:
        """The spec resolves against the *first* reader branch that matches, so only it counts."""
        for index, branch in enumerate(reader.schema):
            candidate = self._reader_types.resolve(_Node(branch, reader.namespace))
            if self._matches(candidate, writer):
                return self.check(candidate, writer, f"{path}/{index}")
        return [
            _problem(
                MISSING_UNION_BRANCH,
                path,
                f"reader union has no branch that can read writer type "
                f"{_describe(writer.schema)}; add a branch of that type to the reader union.",
            )
        ]

    @staticmethod
    def _matches(reader: _Node, writer: _Node) -> bool:
        """The spec's shallow "schemas match" test used to pick a reader union branch."""
        if isinstance(reader.schema, list) or isinstance(writer.schema, list):
            return False
        reader_kind, writer_kind = _kind(reader.schema), _kind(writer.schema)
        if reader_kind in NAMED_KINDS and reader_kind == writer_kind:
            return _names_match(reader, writer)
        return reader_kind == writer_kind or reader_kind in PROMOTIONS.get(writer_kind, ())

    def _memoised(self, reader: _Node, writer: _Node, path: str) -> list[Incompatibility]:
        key = (id(reader.schema), id(writer.schema))
        if key in self._memo:
            return self._memo[key] or []
        self._memo[key] = None
        result = self._named(reader, writer, path)
        self._memo[key] = result
        return result

    def _named(self, reader: _Node, writer: _Node, path: str) -> list[Incompatibility]:
        kind = _kind(reader.schema)
        if not _names_match(reader, writer):
            return [
                _problem(
                    NAME_MISMATCH,
                    f"{path}/name",
                    f"reader {kind} '{reader.schema['name']}' does not match writer {kind} "
                    f"'{writer.schema['name']}'; keep the name or list the writer's name in the "
                    "reader's aliases.",
                )
            ]
        if kind == "record":
            return self._fields(reader, writer, path)
        if kind == "enum":
            return _enum_problems(reader.schema, writer.schema, path)
        return _fixed_problems(reader.schema, writer.schema, path)

    def _fields(self, reader: _Node, writer: _Node, path: str) -> list[Incompatibility]:
        """Fields match by name (or reader alias); writer-only fields are skipped, reader-only
        fields must carry a default."""
        writer_fields = {field["name"]: field for field in writer.schema["fields"]}
        reader_names = {field["name"] for field in reader.schema["fields"]}
        problems: list[Incompatibility] = []
        for field in reader.schema["fields"]:
            field_path = f"{path}/fields/{field['name']}"
            source = _writer_field(field, writer_fields, reader_names)
            if source is not None:
                problems += self.check(
                    _Node(field.get("type"), reader.namespace),
                    _Node(source.get("type"), writer.namespace),
                    f"{field_path}/type",
                )
            elif "default" not in field:
                problems.append(
                    _problem(
                        READER_FIELD_MISSING_DEFAULT_VALUE,
                        field_path,
                        f"reader field '{field['name']}' of record '{reader.schema['name']}' "
                        "is absent from the writer schema and has no default; add a default.",
                    )
                )
        return problems


def _type_mismatch(reader: Any, writer: Any, path: str) -> Incompatibility:
    hint = "keep the type, or make the reader a union that still includes the writer's type"
    if _kind(reader) in PRIMITIVES and _kind(writer) in PRIMITIVES:
        hint = (
            "Avro only promotes int to long/float/double, long to float/double, "
            "float to double and string to/from bytes"
        )
    return _problem(
        TYPE_MISMATCH,
        path,
        f"reader type {_describe(reader)} cannot read writer type {_describe(writer)}; {hint}.",
    )


def _enum_problems(
    reader: dict[str, Any], writer: dict[str, Any], path: str
) -> list[Incompatibility]:
    missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
    if not missing or "default" in reader:
        return []
    return [
        _problem(
            MISSING_ENUM_SYMBOLS,
            f"{path}/symbols",
            f"writer symbols {missing} are missing from reader enum '{reader['name']}'; add "
            "them or give the reader enum a default symbol.",
        )
    ]


def _fixed_problems(
    reader: dict[str, Any], writer: dict[str, Any], path: str
) -> list[Incompatibility]:
    if reader["size"] != writer["size"]:
        return [
            _problem(
                FIXED_SIZE_MISMATCH,
                f"{path}/size",
                f"reader fixed '{reader['name']}' has size {reader['size']} but the writer's has "
                f"size {writer['size']}; a fixed type's size cannot change.",
            )
        ]
    return _decimal_problems(reader, writer, path)


def _decimal_problems(reader: Any, writer: Any, path: str) -> list[Incompatibility]:
    """Spec: two decimals match only if scale and precision match; a plain side is its base type."""
    reader_decimal, writer_decimal = _decimal(reader), _decimal(writer)
    if reader_decimal is None or writer_decimal is None or reader_decimal == writer_decimal:
        return []
    return [
        _problem(
            DECIMAL_MISMATCH,
            path,
            f"reader decimal(precision={reader_decimal[0]}, scale={reader_decimal[1]}) differs "
            f"from writer decimal(precision={writer_decimal[0]}, scale={writer_decimal[1]}); "
            "decimals resolve only when precision and scale are equal.",
        )
    ]


def can_read(reader: Any, writer: Any) -> list[Incompatibility]:
    """Empty list iff data written with ``writer`` can be read with ``reader`` (Avro 1.11).

    Each distinct problem is reported once. Raises ``InvalidSchema`` for a schema that is not
    valid Avro, since "incompatible" would hide the real mistake.
    """
    problems = _Resolution(reader, writer).check(_Node(reader, ""), _Node(writer, ""), "")
    return list(dict.fromkeys(problems))


def check(mode: str, new: Any, previous: list[Any]) -> list[Incompatibility]:
    """Problems registering ``new`` after ``previous`` (oldest..newest) under ``mode``.

    BACKWARD: new reads the latest; FORWARD: the latest reads new; FULL: both; ``*_TRANSITIVE``:
    the same against every previous version; NONE: always ``[]``. Each message starts with the
    direction and version that failed. Raises ``UnknownCompatibilityMode`` (``Invalid``)
    for any other mode, and ``InvalidSchema`` if a schema is not valid Avro.
    """
    if mode not in MODES:
        raise UnknownCompatibilityMode(f"unknown compatibility mode {mode!r}; use one of {MODES}")
    if mode == "NONE" or not previous:
        return []
    total = len(previous)
    numbers = range(1, total + 1) if mode.endswith("_TRANSITIVE") else [total]
    base = mode.removesuffix("_TRANSITIVE")
    problems: list[Incompatibility] = []
    for number in numbers:
        old = previous[number - 1]
        version = f"version {number} of {total}" + (" (latest)" if number == total else "")
        if base in ("BACKWARD", "FULL"):
            context = f"BACKWARD: the new schema cannot read data written with {version}"
            problems += _in_context(can_read(new, old), context)
        if base in ("FORWARD", "FULL"):
            context = f"FORWARD: {version} cannot read data written with the new schema"
            problems += _in_context(can_read(old, new), context)
    return problems


def _in_context(problems: list[Incompatibility], context: str) -> list[Incompatibility]:
    return [replace(p, message=f"{context}: {p.message}") for p in problems]
