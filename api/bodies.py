"""Request bodies, read within limits: a size, a time, and what JSON may do to the parser.

Every route that takes a body reads it here, so none can be made to buffer gigabytes, wait
forever on a client that sends a byte a minute, or answer 500 to JSON nested 100,000 deep
(RecursionError) or an integer of 5,000 digits (ValueError): all of those are a 4xx.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable
from typing import Any

import anyio
import zstandard
from starlette.requests import Request

from api.problems import Problem
from riverbed.core.settings import Settings


def _too_large(limit: int, declared: str | None = None) -> Problem:
    size = (
        "decompressed body"
        if declared == "decompressed"
        else f"body of {declared} bytes"
        if declared
        else "body"
    )
    return Problem(
        413,
        "Body too large",
        f"{size} exceeds the {limit}-byte limit; split it into several requests",
        limit=limit,
    )


async def read_body(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The whole body, decompressed (``Content-Encoding: gzip`` or ``zstd``): 413 past
    ``limit`` bytes sent or decompressed, 408 after ``timeout``, 415 for an unknown encoding.

    A decompression bomb is inflated only up to the limit, never whole: the output is read
    with a bound of ``limit + 1`` bytes and refused if it reaches it.
    """
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in DECODERS:
        raise Problem(
            415,
            "Unsupported content encoding",
            f"Content-Encoding {encoding!r} is not supported; send gzip, zstd or none",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, declared)
    chunks = []
    size = 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(
            408, "Request timeout", f"the body did not arrive within {timeout:g} s"
        ) from None
    body = DECODERS[encoding](b"".join(chunks), limit + 1)
    if len(body) > limit:
        raise _too_large(limit, "decompressed")
    return body


def _gunzip(raw: bytes, most: int) -> bytes:
    try:
        return zlib.decompressobj(wbits=zlib.MAX_WBITS | 16).decompress(raw, most)
    except zlib.error as exc:
        raise Problem(400, "Malformed body", f"the body is not gzip: {exc}") from None


def _unzstd(raw: bytes, most: int) -> bytes:
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as reader:
            return reader.read(most)
    except zstandard.ZstdError as exc:
        raise Problem(400, "Malformed body", f"the body is not zstd: {exc}") from None


DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "identity": lambda raw, most: raw,
    "": lambda raw, most: raw,
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "zstd": _unzstd,
}


def parse_json(raw: bytes, hint: str = "the body is not JSON") -> Any:
    """``raw`` as JSON; a 400 saying ``hint`` (and why) when it is not, or is too deep."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise Problem(400, "Malformed body", "the JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise Problem(400, "Malformed body", f"{hint}: {exc}") from None


async def json_body(request: Request, hint: str = "the body is not JSON") -> Any:
    """The request's JSON body, within the settings' limits for non-ingest routes."""
    settings: Settings = request.app.state.settings
    raw = await read_body(request, settings.max_json_body_bytes, settings.body_read_timeout_seconds)
    return parse_json(raw, hint)
