"""Keep a stream's ClickHouse table in step with the stream's latest clean schema.

One function for the two places that change a table: the API when a stream is created or
evolved (so the table is ready when the client hears back), and the ClickHouse sink when it
meets a record of a schema newer than the one it last synced to (another replica evolved the
stream, or the API's sync failed). It reads the table's columns first, so it adds what is
missing and widens what a newer schema widened, and a repeat run changes nothing.
"""

from __future__ import annotations

from typing import Any

from riverbed.core.clickhouse import ClickHouse
from riverbed.core.topology import events_table
from sinks.ddl import add_column, columns_for, create_events_table, modify_column


def table_columns(engine: ClickHouse, database: str, table: str) -> dict[str, str]:
    """``{column: ClickHouse type}`` of a table; empty when it does not exist."""
    rows = engine.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": database, "t": table},
    ).records()
    return {str(row["name"]): str(row["type"]) for row in rows}


def sync_stream_table(
    engine: ClickHouse, database: str, stream: str, clean_schema: dict[str, Any]
) -> list[str]:
    """Create the table, add missing columns and widen changed ones; the statements it ran."""
    table = events_table(stream)
    existing = table_columns(engine, database, table)
    if not existing:
        statements = [create_events_table(database, stream, clean_schema)]
    else:
        statements = [
            add_column(database, table, column)
            if column.name not in existing
            else modify_column(database, table, column)
            for column in columns_for(clean_schema)
            if existing.get(column.name) != column.type
        ]
    for statement in statements:
        engine.command(statement)
    return statements
