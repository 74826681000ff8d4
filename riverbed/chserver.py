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
import base64
import binascii
import gzip
import hmac
import io
import re
import tempfile
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import lz4.frame
import zstandard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from riverbed.core.clickhouse import ChdbEngine, ClickHouseError, read_secret, string_literal
from riverbed.core.errors import RiverbedError

DEFAULT_FORMAT = "TabSeparated"
# Parameters of the HTTP interface itself, not settings of the query.
TRANSPORT = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "wait_end_of_query",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "enable_http_compression",
        "user",
        "password",
    }
)
_FORMAT = re.compile(r"\bFORMAT\s+(?P<name>[A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\b", re.IGNORECASE)
_INSERT_BYTES = re.compile(rb"^\s*INSERT\b", re.IGNORECASE)
# The FORMAT clause that ends an INSERT's query in a body, and the one line break after it.
_FORMAT_BYTES = re.compile(rb"\bFORMAT\s+(?P<name>[A-Za-z0-9_]+)[ \t]*(?:\r?\n)?", re.IGNORECASE)
_CODE = re.compile(r"Code: (\d+)\.")
MAX_BODY_BYTES = 1 << 30  # a gigabyte of decompressed insert data per request


class QueryFailed(RiverbedError):
    """ClickHouse refused or failed the query; ``code`` is ClickHouse's error code."""

    http_status: int | None = None  # when the ClickHouse code alone does not decide it

    def __init__(self, message: str) -> None:
        super().__init__(message)
        found = _CODE.search(message)
        self.code = int(found.group(1)) if found else 1000  # 1000: POCO_EXCEPTION


class BodyTooLarge(QueryFailed):
    """The body, read or decompressed, is over the front's limit (413)."""

    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Code: 241. DB::Exception: the request body is over {limit} bytes")


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
        prefix = [f"SET {name} = {_setting_value(v)}" for name, v in ordered]
        if database:
            prefix.append(f"USE {_identifier(database)}")
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
        found = _FORMAT.search(sql)
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


_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def settings_of(args: Any) -> dict[str, str]:
    """The query's settings: URL parameters that are neither the interface's own nor bound
    parameters; raises :class:`QueryFailed` for a name that cannot be a setting."""
    found = {}
    for name, value in args.items():
        if name in TRANSPORT or name.startswith("param_"):
            continue
        if not _SETTING_NAME.match(name):
            raise QueryFailed(f"Code: 115. DB::Exception: Unknown setting {name[:64]!r}")
        found[name] = value
    return found


def _setting_value(value: str) -> str:
    return value if _NUMBER.match(value) else string_literal(value)


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def decompress(body: bytes, encoding: str | None, limit: int = MAX_BODY_BYTES) -> bytes:
    """A request body as sent with ``Content-Encoding``, at most ``limit`` bytes once
    decompressed (a decompression bomb stops there); raises :class:`QueryFailed`."""
    encoding = (encoding or "").strip().lower()
    try:
        if encoding in ("", "identity"):
            plain = body
        elif encoding in ("gzip", "deflate"):
            inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
            plain = inflater.decompress(body, limit + 1)
        elif encoding == "zstd":
            plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read(limit + 1)
        elif encoding == "lz4":
            plain = lz4.frame.LZ4FrameDecompressor().decompress(body, max_length=limit + 1)
        else:
            raise QueryFailed(f"Code: 48. DB::Exception: unknown Content-Encoding {encoding!r}")
    except QueryFailed:
        raise
    except Exception as exc:
        raise QueryFailed(
            f"Code: 27. DB::Exception: cannot decompress the body ({encoding}): {exc}"
        ) from None
    if len(plain) > limit:
        raise BodyTooLarge(limit)
    return bytes(plain)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused past ``limit`` bytes without reading the rest."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def compress(body: bytes, accepted: str) -> tuple[bytes, str | None]:
    """The answer compressed with the first encoding the client accepts that we have."""
    offered = [part.split(";")[0].strip().lower() for part in accepted.split(",")]
    for encoding in offered:
        if encoding == "lz4":
            return lz4.frame.compress(body), "lz4"
        if encoding == "zstd":
            return zstandard.ZstdCompressor().compress(body), "zstd"
        if encoding == "gzip":
            return gzip.compress(body, compresslevel=3), "gzip"
        if encoding == "deflate":
            return zlib.compress(body, 3), "deflate"
    return body, None


def split_request(url_query: str | None, body: bytes) -> tuple[str, bytes]:
    """``(query, insert data)`` of a request, as ClickHouse reads them: the query is the URL's
    ``query`` followed by the body; an ``INSERT ... FORMAT F`` ends the query, and what follows
    it (after one line break) is the data, which may be binary (Native, RowBinary)."""
    head = url_query + "\n" if url_query else ""
    if url_query is not None and _INSERT.match(url_query) and _FORMAT.search(url_query):
        return url_query, body
    if _INSERT.match(head) or (not head and _INSERT_BYTES.match(body)):
        found = _FORMAT_BYTES.search(body, 0, 1 << 20)
        if found:
            query, data = body[: found.end("name")], body[found.end() :]
            return head + _text(query), data
    return head + _text(body), b""


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise QueryFailed(f"Code: 27. DB::Exception: the query is not UTF-8: {exc}") from None


def _error(exc: QueryFailed, query_id: str) -> Response:
    status = exc.http_status or (
        400 if exc.code in (27, 36, 47, 48, 60, 62, 81, 115, 390, 395, 497) else 500
    )
    message = (
        str(exc) if str(exc).startswith("Code:") else f"Code: {exc.code}. DB::Exception: {exc}"
    )
    return PlainTextResponse(
        message.rstrip() + "\n",
        status_code=status,
        headers={"X-ClickHouse-Exception-Code": str(exc.code), "X-ClickHouse-Query-Id": query_id},
    )


async def ping(request: Request) -> Response:
    return PlainTextResponse("Ok.\n")


USER = "riverbed"


class AuthenticationFailed(QueryFailed):
    http_status = 403

    def __init__(self) -> None:
        super().__init__(
            "Code: 516. DB::Exception: Authentication failed: password is incorrect, "
            "or there is no user with such name"
        )


def credentials(request: Request) -> tuple[str, str]:
    """``(user, password)`` as ClickHouse clients send them: ``X-ClickHouse-User``/``-Key``
    headers, HTTP Basic, or ``user``/``password`` URL parameters."""
    headers, args = request.headers, request.query_params
    if "x-clickhouse-user" in headers or "x-clickhouse-key" in headers:
        return headers.get("x-clickhouse-user", "default"), headers.get("x-clickhouse-key", "")
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return user, password
    return args.get("user", "default"), args.get("password", "")


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
        found = _FORMAT.search(sql)
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
        return _error(exc, query_id)
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
    return Response(content, media_type=_media_type(answer.format), headers=headers)


def _media_type(fmt: str) -> str:
    name = fmt.lower()
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name in (
        "csv",
        "csvwithnames",
        "tabseparated",
        "tsv",
        "tabseparatedwithnames",
        "tsvwithnames",
    ):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


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
