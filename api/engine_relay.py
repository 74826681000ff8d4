"""One fenced statement run on the pipeline's ClickHouse, its answer streamed to the caller.

Both analyst paths use it: the analysts' endpoint (:mod:`api.sql_gateway`) relays ClickHouse's
answer in the client's format, and ``POST /v1/query`` streams exports (CSV, NDJSON, Parquet)
without buffering them. What it guarantees to both:

- a **slot** per running query (:class:`Slots`: so many in all, fewer per caller), given back
  when the answer ends, however it ends;
- **cancellation**: a caller that disconnects, while the engine works or mid-answer, gets its
  query killed on the engine, not left to run to its time limit;
- **streaming**: the engine's bytes go out as they come, in constant memory.

The statement must already have passed :mod:`api.sql_fence`; the settings (``readonly=1``, the
limits) are the caller's to fix.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
from starlette.requests import Request
from starlette.responses import StreamingResponse

from api.clickhouse_protocol import QueryFailed, status_of
from riverbed.core.clickhouse import ClickHouse, string_literal

log = logging.getLogger(__name__)
#: Headers of the engine's answer that a client reads.
RELAYED = ("content-type", "content-encoding", "x-clickhouse-format", "x-clickhouse-timezone")


class Busy(QueryFailed):
    http_status = 503

    def __init__(self, detail: str) -> None:
        super().__init__(f"Code: 202. DB::Exception: {detail}. (TOO_MANY_SIMULTANEOUS_QUERIES)")


class ClientGone(QueryFailed):
    """The caller disconnected before the engine answered; its query was killed."""

    http_status = 499

    def __init__(self) -> None:
        super().__init__("Code: 394. DB::Exception: the client went away. (QUERY_WAS_CANCELLED)")


@dataclass(frozen=True)
class Upstream:
    """Where the pipeline's ClickHouse is, and the credentials the pipeline uses there."""

    base_url: str
    auth: tuple[str, str] | None

    @classmethod
    def of(cls, url: str) -> Upstream:
        parts = urlsplit(url)
        scheme = "https" if parts.scheme in ("https", "clickhouses") else "http"
        port = parts.port or (8443 if scheme == "https" else 8123)
        auth = (parts.username or "default", parts.password or "") if parts.username else None
        return cls(f"{scheme}://{parts.hostname}:{port}", auth)


class Slots:
    """At most ``total`` queries at once, ``per_holder`` of them for any one key or user; a
    query waits up to ``wait`` seconds for a slot, then gets 503 (code 202)."""

    def __init__(self, total: int, per_holder: int, wait: float) -> None:
        self._free = asyncio.Semaphore(total)
        self._per_holder = per_holder
        self._running: Counter[str] = Counter()
        self._wait = wait

    async def take(self, holder: str) -> None:
        if self._running[holder] >= self._per_holder:
            raise Busy(f"you already run {self._per_holder} queries; wait for one to end")
        self._running[holder] += 1
        try:
            await asyncio.wait_for(self._free.acquire(), self._wait)
        except TimeoutError:
            self._release_holder(holder)
            raise Busy(f"every query slot stayed busy for {self._wait:g}s; try again") from None

    def give_back(self, holder: str) -> None:
        self._free.release()
        self._release_holder(holder)

    def _release_holder(self, holder: str) -> None:
        self._running[holder] -= 1
        if self._running[holder] <= 0:
            del self._running[holder]


class RelayResponse(StreamingResponse):
    """A streamed answer whose ``on_close`` runs once it ends, however it ends: completed,
    failed, or cut by the client (Starlette runs background tasks only on the first)."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        headers: dict[str, str],
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(content, headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._on_close()


class EngineRelay:
    """Runs statements on the engine at ``url`` over its HTTP interface; ``engine`` (a client
    of the same server) kills abandoned queries."""

    def __init__(self, url: str, engine: ClickHouse, slots: Slots, timeout: float) -> None:
        upstream = Upstream.of(url)
        self.engine = engine
        self.slots = slots
        self._http = httpx.AsyncClient(
            base_url=upstream.base_url,
            auth=upstream.auth,
            timeout=httpx.Timeout(timeout, connect=5),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run(
        self,
        request: Request,
        holder: str,
        statement: str,
        fmt: str,
        settings: dict[str, str],
        query_id: str,
        params: dict[str, str] | None = None,
        database: str | None = None,
        accept_encoding: str | None = None,
    ) -> RelayResponse:
        """Take a slot for ``holder``, run ``statement`` with ``settings`` and answer in
        ``fmt``, streamed; raises :class:`QueryFailed` (ClickHouse's error, or :class:`Busy`,
        or :class:`ClientGone`) with the slot already given back."""
        await self.slots.take(holder)
        url_params: dict[str, str] = {
            **settings,
            **{f"param_{k}": v for k, v in (params or {}).items()},
            "query_id": query_id,
            "default_format": fmt,
        }
        if database:
            url_params["database"] = database
        headers = {}
        if accept_encoding is not None:
            url_params["enable_http_compression"] = "1"
            headers["Accept-Encoding"] = accept_encoding
        # The id also rides in the text: an engine without query ids (chdb) can still find it.
        marked = f"/* {query_id} */ {statement}"
        built = self._http.build_request(
            "POST", "/", params=url_params, content=marked.encode(), headers=headers
        )
        sending = asyncio.ensure_future(self._http.send(built, stream=True))
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait((sending, gone), return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not sending.done():  # the client left while the engine worked: stop the work
            sending.cancel()
            with anyio.CancelScope(shield=True):
                await self.kill(query_id)
            self.slots.give_back(holder)
            raise ClientGone()
        try:
            upstream = sending.result()
        except httpx.HTTPError as exc:
            self.slots.give_back(holder)
            failed = QueryFailed(f"Code: 210. DB::Exception: ClickHouse is unreachable: {exc}")
            failed.http_status = 503
            raise failed from None
        if upstream.status_code != 200:
            try:
                text = (await upstream.aread())[:20_000].decode(errors="replace")
            finally:
                await upstream.aclose()
                self.slots.give_back(holder)
            failed = QueryFailed(
                text.strip() or f"Code: 1000. DB::Exception: HTTP {upstream.status_code}"
            )
            failed.http_status = status_of(failed.code)
            raise failed
        finished = False

        async def relay() -> AsyncIterator[bytes]:
            nonlocal finished
            async for chunk in upstream.aiter_raw():
                yield chunk
            finished = True

        async def done() -> None:
            await upstream.aclose()
            self.slots.give_back(holder)
            if not finished:  # the client went away mid-answer: stop the work
                await self.kill(query_id)

        relayed = {name: upstream.headers[name] for name in RELAYED if name in upstream.headers}
        relayed["X-ClickHouse-Query-Id"] = query_id
        if "x-clickhouse-summary" in upstream.headers:
            relayed["X-ClickHouse-Summary"] = upstream.headers["x-clickhouse-summary"]
        return RelayResponse(relay(), headers=relayed, on_close=done)

    async def kill(self, query_id: str) -> None:
        """Cancel query ``query_id`` on the engine, by its id or by the id in its text."""
        quoted = string_literal(query_id)
        statement = (
            f"KILL QUERY WHERE (query_id = {quoted} OR position(query, {quoted}) > 0) "
            "AND NOT startsWith(query, 'KILL') ASYNC"
        )
        try:
            await anyio.to_thread.run_sync(self.engine.command, statement)
        except Exception as exc:  # the query runs on until its time limit; say so
            log.warning("could not cancel query %s: %s", query_id, exc)


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (its body was read whole before)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
