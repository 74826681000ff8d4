"""ClickHouse's HTTP interface over the embedded engine (chdb), for stock ClickHouse clients.

chdb runs ClickHouse inside one process per data dir, so nothing else could open the embedded
data. This process owns it and speaks the part of ClickHouse's HTTP interface that stock
clients use (clickhouse-connect, @clickhouse/client, Grafana's plugin; see the anchors' notes):

- ``GET /ping`` and ``GET|POST /``; the query in the ``query`` URL parameter, the body, or
  both (then the body is the data of an ``INSERT``);
- ``default_format`` and a trailing ``FORMAT`` (any output format ClickHouse has: Native,
  RowBinary, JSON*, CSV, TSV, Parquet, Arrow, ...), ``database``, ``param_<name>`` bound
  parameters, ``query_id``;
- request bodies compressed with gzip, deflate, zstd or lz4 (``Content-Encoding``), and answers
  compressed the same way when the client asks (``enable_http_compression=1`` and
  ``Accept-Encoding``);
- the ``X-ClickHouse-Query-Id``, ``-Format``, ``-Timezone`` and ``-Summary`` headers, and errors
  as ClickHouse answers them: non-2xx, ``X-ClickHouse-Exception-Code``, ``Code: N. DB::...``.

Each query runs on a chdb connection of its own: connections (unlike one chdb session) run
concurrently, so one slow query does not hold up the others, and no query leaves session state
behind for the next.

It listens on loopback and answers one user, ``riverbed``, whose password is the data dir's
``clickhouse.secret``: the pipeline's own processes. Analysts never reach it directly; what
they may ask (the read-only fence, their limits) is decided in front of it.
"""

from __future__ import annotations

import argparse
import hmac
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api.clickhouse_protocol import (
    DEFAULT_FORMAT,
    FORMAT_CLAUSE,
    MAX_BODY_BYTES,
    AuthenticationFailed,
    QueryFailed,
    compress,
    credentials,
    decompress,
    error_response,
    identifier,
    media_type,
    read_body,
    setting_value,
    settings_of,
    split_request,
)
from riverbed.core.clickhouse import ChdbEngine, ClickHouseError, read_secret, string_literal


@dataclass(frozen=True)
class Answer:
    body: bytes
    format: str
    rows: int
    elapsed_ns: int


class Engine:
    """The data dir's chdb engine (:class:`ChdbEngine`: each query on a connection of its own,
    so queries run concurrently and whatever one does to its session, ``SET`` or ``USE``, is
    gone with it); ``slots`` bounds how many run at once."""

    def __init__(self, path: Path, slots: int = 8) -> None:
        self.path = path
        self._engine = ChdbEngine(path)
        self._slots = threading.BoundedSemaphore(slots)
        self.timezone = self.run("SELECT timezone()", "TabSeparated").body.decode().strip()

    def run(
        self,
        sql: str,
        fmt: str,
        params: dict[str, str] | None = None,
        database: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> Answer:
        """Run one query with its settings (``SET`` on its own connection, gone after it);
        raises :class:`QueryFailed`."""
        started = time.perf_counter_ns()
        # ``readonly`` goes last: once it is set, the session refuses to change settings.
        ordered = sorted((settings or {}).items(), key=lambda item: item[0] == "readonly")
        prefix = [f"SET {name} = {setting_value(v)}" for name, v in ordered]
        if database:
            prefix.append(f"USE {identifier(database)}")
        if prefix:
            sql = "; ".join([*prefix, sql])
        with self._slots:
            try:
                result = self._engine.run_text(sql, fmt, params)
            except ClickHouseError as exc:  # ClickHouse's message, with its code
                raise QueryFailed(str(exc)) from None
        body = result.bytes() if hasattr(result, "bytes") else bytes(result)
        rows = result.rows_read() if hasattr(result, "rows_read") else 0
        return Answer(body, fmt, int(rows), time.perf_counter_ns() - started)

    def insert(
        self,
        sql: str,
        data: bytes,
        params: dict[str, str] | None,
        database: str | None,
        settings: dict[str, str] | None = None,
    ) -> Answer:
        """``INSERT INTO t [(cols)] FORMAT F`` with ``data`` in that format: chdb takes no
        binary data after a query, so the data is read back from a file through ``file()``."""
        found = FORMAT_CLAUSE.search(sql)
        if not found:
            raise QueryFailed("Code: 62. DB::Exception: an INSERT with data needs a FORMAT clause")
        head = sql[: found.start()].rstrip()
        with tempfile.NamedTemporaryFile(dir=self.path, suffix=".insert") as spool:
            spool.write(data)
            spool.flush()
            target = re.sub(r"(?i)\bVALUES\s*$", "", head)
            source = f"file({string_literal(spool.name)}, {found.group('name')})"
            statement = f"{target} SELECT * FROM {source}"
            return self.run(statement, "TabSeparated", params, database, settings)


USER = "riverbed"


async def ping(request: Request) -> Response:
    return PlainTextResponse("Ok.\n")


def check_credentials(request: Request) -> None:
    secret: str | None = request.app.state.secret
    if secret is None:
        return
    user, password = credentials(request)
    if not (
        hmac.compare_digest(user.encode(), USER.encode())
        & hmac.compare_digest(password.encode(), secret.encode())
    ):
        raise AuthenticationFailed()


async def query(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    args = request.query_params
    query_id = args.get("query_id") or str(uuid.uuid4())
    limit: int = request.app.state.max_body_bytes
    try:
        check_credentials(request)
        body = await read_body(request, limit)
        body = decompress(body, request.headers.get("content-encoding"), limit)
        sql, data = split_request(args.get("query"), body)
        if not sql.strip():
            raise QueryFailed("Code: 62. DB::Exception: Empty query")
        params = {k[len("param_") :]: v for k, v in args.items() if k.startswith("param_")}
        database = args.get("database") or request.headers.get("x-clickhouse-database")
        found = FORMAT_CLAUSE.search(sql)
        fmt = found.group("name") if found else args.get("default_format") or DEFAULT_FORMAT
        settings = settings_of(args)
        if data:
            answer = await anyio.to_thread.run_sync(
                engine.insert, sql, data, params, database, settings
            )
        else:
            answer = await anyio.to_thread.run_sync(
                lambda: engine.run(sql, fmt, params or None, database, settings)
            )
    except QueryFailed as exc:
        return error_response(exc, query_id)
    headers = {
        "X-ClickHouse-Query-Id": query_id,
        "X-ClickHouse-Format": answer.format,
        "X-ClickHouse-Timezone": engine.timezone,
        "X-ClickHouse-Summary": (
            f'{{"read_rows":"{answer.rows}","read_bytes":"0","written_rows":"0",'
            f'"written_bytes":"0","total_rows_to_read":"0","result_rows":"0",'
            f'"result_bytes":"{len(answer.body)}","elapsed_ns":"{answer.elapsed_ns}"}}'
        ),
    }
    content = answer.body
    if args.get("enable_http_compression") == "1":
        content, encoding = compress(content, request.headers.get("accept-encoding", ""))
        if encoding:
            headers["Content-Encoding"] = encoding
    return Response(content, media_type=media_type(answer.format), headers=headers)


def create_app(
    engine: Engine, max_body_bytes: int = MAX_BODY_BYTES, secret: str | None = None
) -> Starlette:
    """The front over ``engine``; with ``secret``, only user ``riverbed`` with it may query."""
    app = Starlette(
        routes=[
            Route("/ping", ping, methods=["GET", "HEAD"]),
            Route("/", query, methods=["GET", "POST"]),
        ]
    )
    app.state.engine = engine
    app.state.max_body_bytes = max_body_bytes
    app.state.secret = secret
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="the chdb data dir this process owns")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--slots", type=int, default=8, help="queries run at once")
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=MAX_BODY_BYTES,
        help="largest request body, counted decompressed (413 past it)",
    )
    parser.add_argument(
        "--secret-file",
        type=Path,
        help="the password of user riverbed, made if missing (without it: no authentication)",
    )
    args = parser.parse_args(argv)
    secret = read_secret(args.secret_file) if args.secret_file else None
    engine = Engine(Path(args.path), args.slots)
    app = create_app(engine, args.max_body_bytes, secret)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
