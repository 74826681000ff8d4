"""Avro schema -> ClickHouse table DDL, and the row conversion that goes with it.

Records are decoded without logical types (timestamps arrive as epoch integers), so each column
carries the converter that turns the Avro value into what ClickHouse's JSONEachRow input reads.
The mapping is documented in ``docs/clickhouse.md``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Context, Decimal
from typing import Any

from riverbed.core.clickhouse import quote, string_literal
from riverbed.core.errors import Invalid
from riverbed.core.topology import (
    AUDIT_TABLE,
    DEAD_LETTERS_TABLE,
    METRIC_RESULTS_TABLE,
    METRICS_TABLE,
    events_table,
)
from riverbed.core.window_versions import LEGACY_FLOW_VERSION_SQL

Convert = Callable[[Any], Any]


class UnsupportedType(Invalid):
    """The Avro type has no ClickHouse mapping; the message names the field."""

    title = "Invalid stream"


_EPOCH = datetime(1970, 1, 1)
_WIDE = Context(prec=80)  # Avro decimals reach 38+ digits; the default context keeps 28


def _epoch_text(value: int, digits: int) -> str:
    """Epoch ticks as 'YYYY-MM-DD hh:mm:ss.fff' UTC text.

    ClickHouse's JSON input reads quoted 'seconds.fraction' only from 1973 on and a bare float
    loses microseconds, so the calendar form is the one that is exact for every value.
    """
    moment = _EPOCH + timedelta(microseconds=value * 10 ** (6 - digits))
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text[: len(text) - (6 - digits)]


def _same(value: Any) -> Any:
    return value


NO_DEFAULT = object()


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    convert: Convert = _same
    default: Any = NO_DEFAULT  # the Avro field default, already in row form


def default_literal(column: Column) -> str | None:
    """The column's Avro default as a ClickHouse literal, or None when it has none.

    Rows inserted before the column existed read this value, as Avro readers would.
    """
    value = column.default
    if value is NO_DEFAULT:
        return None
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, list) and not value:
        return "[]"
    if isinstance(value, dict) and not value:
        return "map()"
    return None  # composite defaults: ClickHouse's type default (empty) is used instead


def _nullable(ch_type: str) -> str:
    if ch_type.startswith(("Array(", "Map(", "Tuple(", "Nullable(")):
        return ch_type  # ClickHouse cannot wrap composite types in Nullable; they default empty
    if ch_type.startswith("LowCardinality("):
        return f"LowCardinality(Nullable({ch_type[len('LowCardinality(') : -1]}))"
    return f"Nullable({ch_type})"


def _map_type(avro: Any, path: str, named: dict[str, Any]) -> tuple[str, Convert]:
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            # A union of several types is kept lossless as its JSON text.
            return "String", lambda v: None if v is None else json.dumps(v, default=str)
        inner, convert = _map_type(branches[0], path, named)
        if "null" not in avro:
            return inner, convert
        return _nullable(inner), lambda v: None if v is None else convert(v)
    if isinstance(avro, str):
        if avro in named:
            return _map_type(named[avro], path, named)
        simple = {
            "string": "String",
            "int": "Int32",
            "long": "Int64",
            "float": "Float32",
            "double": "Float64",
            "boolean": "Bool",
        }
        if avro in simple:
            return simple[avro], _same
        if avro == "bytes":
            return "String", lambda v: base64.b64encode(v).decode()
        raise UnsupportedType(f"{path}: Avro type {avro!r} has no ClickHouse mapping")
    kind, logical = avro.get("type"), avro.get("logicalType")
    if logical == "timestamp-millis":
        return "DateTime64(3, 'UTC')", lambda v: _epoch_text(v, 3)
    if logical == "timestamp-micros":
        return "DateTime64(6, 'UTC')", lambda v: _epoch_text(v, 6)
    if logical == "date":
        return "Date32", _same
    if logical == "uuid":
        return "UUID", _same
    if logical == "decimal":
        precision, scale = avro["precision"], avro.get("scale", 0)
        return (
            f"Decimal({precision}, {scale})",
            lambda v: str(Decimal(int.from_bytes(v, "big", signed=True)).scaleb(-scale, _WIDE)),
        )
    if kind in ("record", "enum", "fixed") and "name" in avro:
        named[avro["name"]] = avro
        if "namespace" in avro and "." not in avro["name"]:
            named[f"{avro['namespace']}.{avro['name']}"] = avro
    if kind == "enum":
        return "LowCardinality(String)", _same
    if kind == "fixed":
        return "String", lambda v: base64.b64encode(v).decode()
    if kind == "array":
        inner, convert = _map_type(avro["items"], f"{path}[]", named)
        return f"Array({inner})", lambda v: [convert(x) for x in v]
    if kind == "map":
        inner, convert = _map_type(avro["values"], f"{path}{{}}", named)
        return f"Map(String, {inner})", lambda v: {k: convert(x) for k, x in v.items()}
    if kind == "record":
        for f in avro["fields"]:  # register the named types it defines, for later references
            _map_type(f["type"], f"{path}.{f['name']}", named)
        # Nested records are stored as JSON text: queryable with JSONExtract, and immune to the
        # Tuple-evolution limits of older ClickHouse servers.
        return "String", lambda v: json.dumps(v, default=str)
    return _map_type(kind, path, named)


def columns_for(schema: dict[str, Any]) -> list[Column]:
    named: dict[str, Any] = {schema["name"]: schema}
    columns = []
    for f in schema["fields"]:
        ch_type, convert = _map_type(f["type"], f["name"], named)
        default = NO_DEFAULT
        if "default" in f:
            raw = f["default"]
            try:
                default = None if raw is None else convert(raw)
            except (TypeError, ValueError, AttributeError):
                default = NO_DEFAULT  # e.g. a bytes default given as text: no literal for it
        columns.append(Column(f["name"], ch_type, convert, default))
    return columns


def column_definition(column: Column) -> str:
    """``name Type [DEFAULT literal]``, as ADD and MODIFY COLUMN take it."""
    literal = default_literal(column)
    default = f" DEFAULT {literal}" if literal is not None else ""
    return f"{quote(column.name)} {column.type}{default}"


def add_column(database: str, table: str, column: Column) -> str:
    """``ADD COLUMN IF NOT EXISTS`` with the Avro default: rows stored before read it, as an
    Avro reader would. Removed fields keep their column (old rows still hold data)."""
    return (
        f"ALTER TABLE {quote(database)}.{quote(table)} ADD COLUMN IF NOT EXISTS "
        f"{column_definition(column)}"
    )


def modify_column(database: str, table: str, column: Column) -> str:
    """Change a column to the type a newer schema gives its field.

    Only widenings reach this: a stream's schema must read every earlier version of itself
    (BACKWARD_TRANSITIVE), so a field dropped and added back with another type can only come
    back as a type Avro promotes the old one to (int to long, float or double; long to float
    or double; float to double; a branch of a union). Without it the column would keep the
    old type and refuse, or wrap, values of the new one.
    """
    return f"ALTER TABLE {quote(database)}.{quote(table)} MODIFY COLUMN {column_definition(column)}"


def create_events_table(database: str, stream: str, schema: dict[str, Any]) -> str:
    """ReplacingMergeTree on (event_time, event_id): a re-delivered event collapses into one row.

    Queries that must be exact read with ``FINAL`` (the API does); merges collapse the rest.
    """
    cols = ",\n  ".join(f"{quote(c.name)} {c.type}" for c in columns_for(schema))
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(database)}.{quote(events_table(stream))} (\n  {cols}\n)"
        "\nENGINE = ReplacingMergeTree"
        "\nPARTITION BY toYYYYMM(event_time)"
        "\nORDER BY (event_time, event_id)"
    )


def create_dead_letters_table(database: str) -> str:
    """Every dead letter of every stream, for listing and replay; ``dlq_id`` is its position."""
    return f"""CREATE TABLE IF NOT EXISTS {quote(database)}.{quote(DEAD_LETTERS_TABLE)} (
  `dlq_id` String,
  `stream` LowCardinality(String),
  `stage` LowCardinality(String),
  `error` String,
  `original` String,
  `event_id` Nullable(String),
  `failed_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (stream, failed_at, dlq_id)"""


def window_flow_version(database: str, table: str) -> str:
    """``flow_version`` on a window table created before it existed; its older rows read it
    from their ``version`` (see ``riverbed.core.window_versions``)."""
    return (
        f"ALTER TABLE {quote(database)}.{quote(table)} ADD COLUMN IF NOT EXISTS "
        f"`flow_version` Int64 DEFAULT {LEGACY_FLOW_VERSION_SQL}"
    )


def create_metrics_table(database: str) -> str:
    """One row per (stream, field, group, window); the highest ``version`` wins, which is a
    rank, not the flow's version (``flow_version``): see ``riverbed.core.window_versions``."""
    return f"""CREATE TABLE IF NOT EXISTS {quote(database)}.{quote(METRICS_TABLE)} (
  `stream` LowCardinality(String),
  `group` String,
  `field` LowCardinality(String),
  `window_start` DateTime64(3, 'UTC'),
  `window_end` DateTime64(3, 'UTC'),
  `count` UInt64,
  `sum` Float64,
  `min` Nullable(Float64),
  `max` Nullable(Float64),
  `avg` Nullable(Float64),
  `final` Bool,
  `version` Int64,
  `flow_version` Int64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (stream, field, `group`, window_start)"""


def create_metric_results_table(database: str) -> str:
    """One row per (metric, generation, group, window). The highest ``version`` (a rank, see
    ``riverbed.core.window_versions``) wins, and a row with ``deleted = 1`` (a session merged
    into another) hides the window under ``FINAL``.
    ``values`` holds each aggregation by its output name, e.g. ``values['p99_amount']``."""
    return f"""CREATE TABLE IF NOT EXISTS {quote(database)}.{quote(METRIC_RESULTS_TABLE)} (
  `metric` LowCardinality(String),
  `generation` LowCardinality(String),
  `stream` LowCardinality(String),
  `group_key` String,
  `group` Map(String, String),
  `window_start` DateTime64(3, 'UTC'),
  `window_end` DateTime64(3, 'UTC'),
  `count` UInt64,
  `values` Map(String, Float64),
  `final` Bool,
  `deleted` UInt8,
  `version` Int64,
  `flow_version` Int64
)
ENGINE = ReplacingMergeTree(version, deleted)
ORDER BY (metric, generation, group_key, window_start)"""


def create_audit_table(database: str) -> str:
    """Every audited action; one row per ``audit_id`` (a redelivered record collapses)."""
    return f"""CREATE TABLE IF NOT EXISTS {quote(database)}.{quote(AUDIT_TABLE)} (
  `audit_id` String,
  `at` DateTime64(3, 'UTC'),
  `actor` String,
  `actor_name` String,
  `action` LowCardinality(String),
  `target` String,
  `outcome` LowCardinality(String),
  `status` UInt16,
  `source_ip` String,
  `request_id` String,
  `details` String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, audit_id)"""


def row_converter(schema: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    columns = [(c.name, c.convert) for c in columns_for(schema)]

    def convert(record: dict[str, Any]) -> dict[str, Any]:
        return {
            name: fn(record.get(name)) if record.get(name) is not None else None
            for name, fn in columns
        }

    return convert
