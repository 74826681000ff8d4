"""ClickHouse access: a server through clickhouse-connect, or the chdb engine in this process.

The pipeline always reaches ClickHouse as a server (:func:`connect`): ``CLICKHOUSE_URL``, or
the embedded engine's front that ``riverbed up`` starts. :class:`ChdbEngine` is that front's
engine (chdb allows one process per data dir). Both speak one small interface
(:class:`ClickHouse`); async callers go through ``anyio.to_thread``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from riverbed.core.errors import Invalid, RiverbedError
from riverbed.core.settings import Settings

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


def parameter_text(value: Any) -> str:
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
        text = {name: parameter_text(v) for name, v in (parameters or {}).items()}
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
    """A ClickHouse server reached with clickhouse-connect: ``CLICKHOUSE_URL``, or the embedded
    engine's front (:mod:`riverbed.chserver`) that ``riverbed up`` starts. One code path for
    both, so what runs in CI is what runs against a real server.

    Reads ask for ``JSONCompact``, as :class:`ChdbEngine` does, so settings such as
    ``output_format_json_quote_64bit_integers`` shape the answer the same way on both. No
    session: queries from many threads run side by side on one client (a session would
    serialise them, and its state would leak from one caller to the next).
    """

    def __init__(self, url: str, wait_seconds: float = 0.0) -> None:
        import clickhouse_connect

        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                self._client = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False)
                break
            except Exception as exc:  # not up yet: retry until the deadline
                if time.monotonic() >= deadline:
                    raise ClickHouseError(f"cannot reach ClickHouse: {exc}") from exc
                time.sleep(0.2)

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as exc:
            raise ClickHouseError(str(exc)) from exc

    def insert_json_rows(self, database: str, table: str, rows: Iterable[dict[str, Any]]) -> None:
        body = "\n".join(json.dumps(r, separators=(",", ":")) for r in rows).encode()
        if not body:
            return
        try:
            self._client.raw_insert(f"`{database}`.`{table}`", insert_block=body, fmt="JSONEachRow")
        except Exception as exc:
            raise ClickHouseError(str(exc)) from exc

    def query(
        self,
        sql: str,
        settings: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> QueryResult:
        try:
            # The format as a setting, not a FORMAT clause appended to the text: EXPLAIN AST
            # would count that clause as part of the statement it explains.
            text = self._client.raw_query(
                sql,
                parameters=parameters or None,
                settings={**(settings or {}), "default_format": "JSONCompact"},
            )
        except Exception as exc:
            raise ClickHouseError(str(exc)) from exc
        if not text:
            return QueryResult([], [])
        payload = json.loads(text)
        return QueryResult(payload.get("meta", []), payload.get("data", []))

    def close(self) -> None:
        self._client.close()


def connect(settings: Settings, wait_seconds: float = 60.0) -> ClickHouse:
    """The pipeline's ClickHouse (``CLICKHOUSE_URL``: a server, or the embedded engine's front,
    which may still be starting, hence the wait)."""
    return ServerEngine(settings.require_clickhouse(), wait_seconds)


def read_secret(path: Path) -> str:
    """The secret kept in ``path``, made on first use: 32 random bytes, URL-safe, in a file
    only its owner can read. Made under a temporary name and linked into place, so two
    processes racing to make it agree on one."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip()
