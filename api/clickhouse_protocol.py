"""ClickHouse's HTTP interface, the parts both of Riverbed's ClickHouse endpoints speak: the
embedded engine's front (:mod:`riverbed.chserver`) and the analysts' endpoint
(:mod:`api.sql_gateway`). How a request carries its query, data, format, settings, parameters
and credentials; how bodies are compressed; how an error looks (``Code: N. DB::Exception``
with ``X-ClickHouse-Exception-Code``), as stock clients expect them.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import re
import zlib
from typing import Any

import lz4.frame
import zstandard
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from riverbed.core.clickhouse import string_literal
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
FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+(?P<name>[A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
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


def setting_value(value: str) -> str:
    return value if _NUMBER.match(value) else string_literal(value)


def identifier(name: str) -> str:
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
    if url_query is not None and _INSERT.match(url_query) and FORMAT_CLAUSE.search(url_query):
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


#: HTTP statuses of ClickHouse error codes a caller causes (the rest are the server's: 500).
_STATUS = {
    **dict.fromkeys((27, 36, 43, 46, 47, 48, 53, 62, 115, 386, 390, 395, 456, 457), 400),
    **dict.fromkeys((60, 81), 404),  # UNKNOWN_TABLE, UNKNOWN_DATABASE
    **dict.fromkeys((516,), 401),  # AUTHENTICATION_FAILED
    **dict.fromkeys((164, 497), 403),  # READONLY, ACCESS_DENIED
    **dict.fromkeys((158, 241, 307, 396), 413),  # too many rows or bytes, memory limit
    159: 504,  # TIMEOUT_EXCEEDED
    202: 503,  # TOO_MANY_SIMULTANEOUS_QUERIES
}


def status_of(code: int) -> int:
    """The HTTP status of ClickHouse error ``code``: 4xx for what the caller can change."""
    return _STATUS.get(code, 500)


def error_response(exc: QueryFailed, query_id: str) -> Response:
    status = exc.http_status or status_of(exc.code)
    message = (
        str(exc) if str(exc).startswith("Code:") else f"Code: {exc.code}. DB::Exception: {exc}"
    )
    return PlainTextResponse(
        message.rstrip() + "\n",
        status_code=status,
        headers={"X-ClickHouse-Exception-Code": str(exc.code), "X-ClickHouse-Query-Id": query_id},
    )


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


def media_type(fmt: str) -> str:
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
