"""The audit trail as stored: ClickHouse's ``audit`` table (the sink copies the topic there)."""

from __future__ import annotations

from typing import Any

from api.stores.events import EVENT_READS
from riverbed.core.clickhouse import ClickHouse, quote
from riverbed.core.topology import AUDIT_TABLE

COLUMNS = (
    "audit_id, at, actor, actor_name, action, target, outcome,"
    " status, source_ip, request_id, details"
)
FILTERS = ("actor", "action", "outcome")


class AuditStore:
    """Blocking (ClickHouse); async callers use a thread."""

    def __init__(self, clickhouse: ClickHouse, database: str) -> None:
        self.clickhouse = clickhouse
        self.table = f"{quote(database)}.{quote(AUDIT_TABLE)}"

    def page(
        self,
        filters: dict[str, str],
        *,
        limit: int,
        start: int | None = None,
        end: int | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``filters`` by exact value of actor, action or outcome."""
        where: list[str] = ["1"]
        params: dict[str, Any] = {}
        for name in FILTERS:
            if name in filters:
                where.append(f"{name} = {{{name}:String}}")
                params[name] = filters[name]
        if start is not None:
            where.append("at >= fromUnixTimestamp64Milli({start:Int64})")
            params["start"] = start
        if end is not None:
            where.append("at < fromUnixTimestamp64Milli({end:Int64})")
            params["end"] = end
        sql = (
            f"SELECT {COLUMNS} FROM {self.table} FINAL WHERE {' AND '.join(where)}"
            f" ORDER BY at DESC, audit_id DESC LIMIT {int(limit)}"
        )
        return self.clickhouse.query(sql, EVENT_READS, params).records()
