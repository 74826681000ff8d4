"""Windows of declared metrics, from ClickHouse (exact: ``FINAL`` keeps the newest version)."""

from __future__ import annotations

from typing import Any

from api.stores.events import PLAIN_INTEGERS
from riverbed.core.clickhouse import ClickHouse, quote
from riverbed.core.topology import METRIC_RESULTS_TABLE
from riverbed.core.window_versions import SHOWN_VERSION_SQL

COLUMNS = (
    "group_key, `group`, toUnixTimestamp64Milli(window_start) AS window_start,"
    " toUnixTimestamp64Milli(window_end) AS window_end, count, `values`, final, "
    + SHOWN_VERSION_SQL
)


class MetricResultStore:
    def __init__(self, clickhouse: ClickHouse, database: str) -> None:
        self.clickhouse = clickhouse
        self.table = f"{quote(database)}.{quote(METRIC_RESULTS_TABLE)}"

    def windows(
        self,
        metric: str,
        generation: str,
        *,
        limit: int,
        group: str | None = None,
        start: int | None = None,
        end: int | None = None,
        final_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Windows of the metric's current ``generation`` whose start is in ``[start, end)``."""
        where = ["metric = {metric:String}", "generation = {generation:String}"]
        params: dict[str, Any] = {"metric": metric, "generation": generation}
        if group is not None:
            where.append("group_key = {group:String}")
            params["group"] = group
        if start is not None:
            where.append("toUnixTimestamp64Milli(window_start) >= {start:Int64}")
            params["start"] = start
        if end is not None:
            where.append("toUnixTimestamp64Milli(window_start) < {end:Int64}")
            params["end"] = end
        if final_only:
            where.append("final")
        sql = (
            f"SELECT {COLUMNS} FROM {self.table} FINAL WHERE {' AND '.join(where)}"
            f" ORDER BY window_start, group_key LIMIT {int(limit)}"
        )
        return self.clickhouse.query(sql, PLAIN_INTEGERS, params).records()
