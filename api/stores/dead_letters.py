"""Dead letters: read from ClickHouse (the sink copies every ``dlq.*`` record there), with the
set of replayed ones in Redis."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from api.stores.events import EVENT_READS, PLAIN_INTEGERS
from riverbed.core.clickhouse import ClickHouse, quote
from riverbed.core.redis import as_text
from riverbed.core.topology import DEAD_LETTERS_TABLE, replayed_key

# failed_at reads as ISO-8601 UTC, as every timestamp the API answers; _t is the cursor's.
COLUMNS = (
    "dlq_id, stage, error, event_id, failed_at, toUnixTimestamp64Milli(failed_at) AS _t, original"
)


class DeadLetterStore:
    """Blocking: ClickHouse and a synchronous Redis client; async callers use a thread."""

    def __init__(self, clickhouse: ClickHouse, database: str, client: redis.Redis) -> None:
        self.clickhouse = clickhouse
        self.table = f"{quote(database)}.{quote(DEAD_LETTERS_TABLE)}"
        self.redis = client

    def _letters(self, where: list[str], params: dict[str, Any], limit: int) -> list[dict]:
        sql = (
            f"SELECT {COLUMNS} FROM {self.table} FINAL WHERE {' AND '.join(where)}"
            f" ORDER BY failed_at DESC, dlq_id DESC LIMIT {int(limit)}"
        )
        return self.clickhouse.query(sql, EVENT_READS, params).records()

    def page(
        self,
        stream: str,
        *,
        limit: int,
        stage: str | None = None,
        after: tuple[int, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, older than the ``after`` position ``(failed_at ms, dlq_id)``."""
        where = ["stream = {stream:String}"]
        params: dict[str, Any] = {"stream": stream}
        if stage is not None:
            where.append("stage = {stage:String}")
            params["stage"] = stage
        if after is not None:
            where.append(
                "(toUnixTimestamp64Milli(failed_at), dlq_id) < ({after_t:Int64}, {after_id:String})"
            )
            params["after_t"], params["after_id"] = after
        return self._letters(where, params, limit)

    def by_ids(self, stream: str, ids: Iterable[str], limit: int) -> list[dict[str, Any]]:
        wanted = list(ids)
        if not wanted:
            return []
        where = ["stream = {stream:String}", "has({ids:Array(String)}, dlq_id)"]
        return self._letters(where, {"stream": stream, "ids": wanted}, limit)

    def not_replayed(self, stream: str, limit: int) -> list[dict[str, Any]]:
        replayed = self.replayed(stream)
        letters = self._letters(["stream = {stream:String}"], {"stream": stream}, limit)
        return [letter for letter in letters if letter["dlq_id"] not in replayed]

    def counts(self, stream: str) -> dict[str, int]:
        """Dead letters per stage."""
        result = self.clickhouse.query(
            f"SELECT stage, count() FROM {self.table} FINAL WHERE stream = {{stream:String}}"
            " GROUP BY stage",
            PLAIN_INTEGERS,
            {"stream": stream},
        )
        return {stage: int(n) for stage, n in result.rows}

    def counts_by_stream(self) -> dict[str, dict[str, int]]:
        """Dead letters per stream and stage."""
        result = self.clickhouse.query(
            f"SELECT stream, stage, count() FROM {self.table} FINAL GROUP BY stream, stage",
            PLAIN_INTEGERS,
        )
        counts: dict[str, dict[str, int]] = {}
        for stream, stage, n in result.rows:
            counts.setdefault(stream, {})[stage] = int(n)
        return counts

    def replayed(self, stream: str) -> set[str]:
        return {as_text(m) for m in self.redis.smembers(replayed_key(stream))}

    def mark_replayed(self, stream: str, ids: list[str]) -> None:
        if ids:
            self.redis.sadd(replayed_key(stream), *ids)
