"""ClickHouse access: the embedded chdb engine or a server through clickhouse-connect.

Both speak the same small interface (:class:`ClickHouse`), so the sink and the query API do not
care which one runs. chdb allows one process per data dir and is not re-entrant, so
:class:`ChdbEngine` serialises calls with a lock; async callers go through ``anyio.to_thread``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from riverbed.core.errors import Invalid, RiverbedError

log = logging.getLogger(__name__)
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote(identifier: str) -> str:
    """Backtick-quote an identifier; only ``[A-Za-z_][A-Za-z0-9_]*`` is accepted, so quoting is
    safe. Values never go through here: they travel as query parameters (``{name:Type}``)."""
    if not IDENTIFIER.match(identifier):
        raise Invalid(f"{identifier!r} is not a valid ClickHouse identifier")
    return f"`{identifier}`"


class ClickHouseError(RiverbedError):
    """ClickHouse rejected a statement; the message is ClickHouse's own.

    A caller sees why: its query timed out (504), needed too much memory (413), or failed (400).
    """

    status, title = 400, "Query failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.detail = message[:2000]  # ClickHouse echoes the whole statement back
        if "TIMEOUT_EXCEEDED" in message:
            self.status, self.title = 504, "Query timed out"
        elif "MEMORY_LIMIT_EXCEEDED" in message:
            self.status, self.title = 413, "Query too large"


@dataclass(frozen=True)
class QueryResult:
    columns: list[dict[str, str]]  # [{"name": ..., "type": ...}]
    rows: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        """Rows as ``{column: value}`` dicts."""
        names = [c["name"] for c in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.rows]


class ClickHouse(Protocol):
    def command(self, sql: str) -> None: ...

    def insert_json_rows(
        self, database: str, table: str, rows: Iterable[dict[str, Any]]
    ) -> None: ...

    def query(
        self,
        sql: str,
        settings: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> QueryResult:
        """Run ``sql``; ``parameters`` fill its ``{name:Type}`` placeholders on the server, so
        values are never spliced into SQL text."""
        ...

    def close(self) -> None: ...


def _settings_clause(settings: dict[str, Any] | None) -> str:
    if not settings:
        return ""
    parts = []
    for key, value in settings.items():
        rendered = f"'{value}'" if isinstance(value, str) else str(value)
        parts.append(f"{key}={rendered}")
    return "\nSETTINGS " + ", ".join(parts)


def _parameter_text(value: Any) -> str:
    """A parameter in the text form ClickHouse parses for its declared type (chdb passes text
    through as is). Only arrays need quoting inside: their elements are parsed as data, so a
    mistake here fails to parse; it cannot become SQL."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(_element_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # read in ClickHouse's escaped form, as TSV fields are
        return "".join(_ESCAPES.get(c, c) for c in value)
    return str(value)


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def _element_text(value: Any) -> str:
    return string_literal(value) if isinstance(value, str) else str(value)


def string_literal(value: str) -> str:
    """A ClickHouse string literal: backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ChdbEngine:
    """In-process ClickHouse (chdb-core) persisted under ``path``; one connection per query.

    One chdb session ran every query under one lock, so an analyst's slow query held up the
    sink's inserts, and a failed query left output in the session that the next reader got
    glued to its own (a JSON decode error, ``/readyz`` included). A connection of its own per
    query (about 1 ms to open) runs concurrently with the others and leaves nothing behind;
    the first connection stays open, and with it the engine.
    """

    def __init__(self, path: Path) -> None:
        import chdb  # imported lazily: loading the engine takes ~1 s

        path.mkdir(parents=True, exist_ok=True)
        self._path = str(path)
        self._connect = chdb.connect
        self._keeper = chdb.connect(self._path)
        self._closed = False

    def run_text(self, sql: str, fmt: str, params: dict[str, str] | None = None) -> Any:
        """chdb's raw result of one query on a connection of its own; ``params`` already in
        the text form ClickHouse parses (the HTTP front gets them so from its clients)."""
        if self._closed:
            raise ClickHouseError("the engine is closed")
        connection = self._connect(self._path)
        try:
            if params:
                return connection.query(sql, fmt, params=params)
            return connection.query(sql, fmt)
        except Exception as exc:  # chdb raises a bare ChdbError/RuntimeError
            raise ClickHouseError(str(exc)) from exc
        finally:
            connection.close()

    def _run(self, sql: str, fmt: str = "CSV", parameters: dict[str, Any] | None = None) -> Any:
        text = {name: _parameter_text(v) for name, v in (parameters or {}).items()}
        return self.run_text(sql, fmt, text or None)

    def command(self, sql: str) -> None:
        self._run(sql)

    def insert_json_rows(self, database: str, table: str, rows: Iterable[dict[str, Any]]) -> None:
        body = "\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
        if body:
            self._run(f"INSERT INTO `{database}`.`{table}` FORMAT JSONEachRow\n{body}")

    def query(
        self,
        sql: str,
        settings: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> QueryResult:
        result = self._run(sql + _settings_clause(settings), "JSONCompact", parameters)
        text = result.bytes() if hasattr(result, "bytes") else bytes(result)
        if not text:
            return QueryResult([], [])
        payload = json.loads(text)
        return QueryResult(payload.get("meta", []), payload.get("data", []))

    def close(self) -> None:
        self._closed = True
        self._keeper.close()


class ServerEngine:
    """A ClickHouse server reached with clickhouse-connect (``CLICKHOUSE_URL``)."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        self._client = clickhouse_connect.get_client(dsn=url)
        self._lock = threading.Lock()  # clickhouse-connect clients are not thread-safe

    def command(self, sql: str) -> None:
        with self._lock:
            try:
                self._client.command(sql)
            except Exception as exc:
                raise ClickHouseError(str(exc)) from exc

    def insert_json_rows(self, database: str, table: str, rows: Iterable[dict[str, Any]]) -> None:
        body = "\n".join(json.dumps(r, separators=(",", ":")) for r in rows).encode()
        if not body:
            return
        with self._lock:
            try:
                self._client.raw_insert(
                    f"`{database}`.`{table}`", insert_block=body, fmt="JSONEachRow"
                )
            except Exception as exc:
                raise ClickHouseError(str(exc)) from exc

    def query(
        self,
        sql: str,
        settings: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> QueryResult:
        with self._lock:
            try:
                result = self._client.query(
                    sql, parameters=parameters or None, settings=settings or {}
                )
            except Exception as exc:
                raise ClickHouseError(str(exc)) from exc
        columns = [
            {"name": n, "type": t.name}
            for n, t in zip(result.column_names, result.column_types, strict=True)
        ]
        rows = [[_jsonable(v) for v in row] for row in result.result_rows]
        return QueryResult(columns, rows)

    def close(self) -> None:
        self._client.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def connect(clickhouse_url: str | None, chdb_path: Path) -> ClickHouse:
    return ServerEngine(clickhouse_url) if clickhouse_url else ChdbEngine(chdb_path)
