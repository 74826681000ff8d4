"""The limits and filters every analyst query runs with, on the analysts' endpoint and in
``POST /v1/query`` exports: fixed here, as ClickHouse settings the caller cannot reach.

Limits come per role: ``RIVERBED_SQL_ROLE_LIMITS`` names, for some roles, higher (or lower)
values than the defaults (``{"admin": {"max_execution_time": 600}}``); a caller with several
roles gets the most generous value of each limit, one without a listed role the defaults. A
client may lower a limit for one query, never raise it.
"""

from __future__ import annotations

from collections.abc import Iterable

from riverbed.core.clickhouse import string_literal
from riverbed.core.settings import SQL_LIMITS, Settings
from riverbed.core.topology import (
    DEAD_LETTERS_TABLE,
    METRIC_RESULTS_TABLE,
    METRICS_TABLE,
    events_table,
)

#: Limits a client may lower, never raise (Grafana's plugin sends its query timeout as
#: ``max_execution_time``, which a read-only server refuses; a lower one only tightens).
LIMITS = SQL_LIMITS
#: Tables with a ``stream`` column: a caller limited to streams reads only its streams' rows.
SHARED_TABLES = (DEAD_LETTERS_TABLE, METRICS_TABLE, METRIC_RESULTS_TABLE)


def role_limits(settings: Settings, roles: Iterable[str]) -> dict[str, float]:
    """The limits of a caller with ``roles``: each the most generous its roles are given."""
    defaults = {
        "max_execution_time": settings.sql_timeout_seconds,
        "max_memory_usage": float(settings.query_max_memory_bytes),
        "max_result_rows": float(settings.sql_max_result_rows),
        "max_result_bytes": float(settings.sql_max_result_bytes),
        "max_threads": float(settings.sql_max_threads),
    }
    listed = [settings.sql_role_limits[r] for r in roles if r in settings.sql_role_limits]
    if not listed:
        return defaults
    return {
        name: max(given.get(name, default) for given in listed)
        for name, default in defaults.items()
    }


def fixed_settings(
    settings: Settings,
    streams: list[str] | None,
    roles: Iterable[str] = (),
    asked: dict[str, str] | None = None,
) -> dict[str, str]:
    """The settings an analyst query runs with, for a caller with ``roles`` limited to
    ``streams`` (None: every stream); ``asked`` may only lower a limit."""
    limits = role_limits(settings, roles)
    for name, value in (asked or {}).items():
        lower = _number(value)
        if name in limits and lower is not None and 0 < lower < limits[name]:
            limits[name] = lower
    fixed = {name: _text(value) for name, value in limits.items()}
    fixed["result_overflow_mode"] = "throw"
    fixed["readonly"] = "1"  # last: the engine applies it after the others
    filters = row_filters(settings.clickhouse_database, streams)
    if filters:
        fixed = {"additional_table_filters": filters, **fixed}
    return fixed


def row_filters(database: str, streams: list[str] | None) -> str:
    """``additional_table_filters`` for a caller limited to ``streams`` (empty when it is
    not): its streams' rows of the shared tables, its streams' tables in the schema listings.
    Each table by its full and its short name: ClickHouse matches the name as written."""
    if streams is None:
        return ""
    names = sorted(streams)
    in_streams = "stream IN (" + ", ".join(map(string_literal, names)) + ")" if names else "0"
    tables = "(" + ", ".join(string_literal(events_table(s)) for s in names) + ")"
    if not names:
        tables = "('')"
    pipeline = string_literal(database)
    prefix = string_literal(events_table(""))
    filters = {
        "system.tables": f"database != {pipeline} OR NOT startsWith(name, {prefix}) "
        f"OR name IN {tables}",
        "system.columns": f"database != {pipeline} OR NOT startsWith(table, {prefix}) "
        f"OR table IN {tables}",
    }
    for table in SHARED_TABLES:
        filters[f"{database}.{table}"] = in_streams
        filters[table] = in_streams
    pairs = ", ".join(f"{string_literal(k)}: {string_literal(v)}" for k, v in filters.items())
    return "{" + pairs + "}"


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
