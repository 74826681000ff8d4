"""A stream's stored events, newest first, from ClickHouse."""

from __future__ import annotations

from typing import Any

from riverbed.core.clickhouse import ClickHouse, quote
from riverbed.core.topology import events_table

#: Integers as JSON numbers, for values the API reads itself (counts, epoch milliseconds).
PLAIN_INTEGERS = {"output_format_json_quote_64bit_integers": 0}
#: What every read of stored data answers with: timestamps as ISO-8601 in UTC
#: (``2026-12-04T03:53:12.824Z``, the form ingest takes) and 64-bit integers as JSON strings
#: (``"9007199254740993"``), which JavaScript's numbers would round past 2**53.
EVENT_READS = {"output_format_json_quote_64bit_integers": 1, "date_time_output_format": "iso"}


class EventStore:
    """Keyset pages over ``(event_time, event_id)``, exact thanks to ``FINAL``."""

    def __init__(self, clickhouse: ClickHouse, database: str) -> None:
        self.clickhouse = clickhouse
        self.database = database

    def page(
        self,
        stream: str,
        *,
        limit: int,
        start: int | None = None,
        end: int | None = None,
        after: tuple[int, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` events with ``start <= event_time < end`` (epoch ms), older than the
        ``after`` position ``(event_time ms, event_id)``. Each row carries ``_t``, its position's
        time, for the next cursor."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if start is not None:
            where.append("event_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')")
            params["start"] = start
        if end is not None:
            where.append("event_time < fromUnixTimestamp64Milli({end:Int64}, 'UTC')")
            params["end"] = end
        if after is not None:
            where.append(
                "(toUnixTimestamp64Milli(event_time), event_id)"
                " < ({after_t:Int64}, {after_id:String})"
            )
            params["after_t"], params["after_id"] = after
        table = f"{quote(self.database)}.{quote(events_table(stream))}"
        sql = (
            f"SELECT *, toUnixTimestamp64Milli(event_time) AS _t FROM {table} FINAL"
            f"{' WHERE ' + ' AND '.join(where) if where else ''}"
            f" ORDER BY event_time DESC, event_id DESC LIMIT {int(limit)}"
        )
        return self.clickhouse.query(sql, EVENT_READS, params).records()

    def insert(self, stream: str, rows: list[dict[str, Any]]) -> None:
        """Rows in the table's own shape (dead-letter replay of the sink stage)."""
        self.clickhouse.insert_json_rows(self.database, events_table(stream), rows)
