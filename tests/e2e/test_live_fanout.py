"""One API process, a thousand live clients: each receives the update of a posted event, while
``/readyz`` and ingest keep answering.

The clients are real HTTP connections to the pipeline's API (ten keys, a hundred streams each:
the per-caller limit), filtered to a group of this test's own, so each receives exactly the
updates of the events posted here.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from control.keys import key_store
from control.scopes import ROLES
from riverbed.core.settings import Settings
from tests.conftest import WINDOW_SECONDS, Pipeline

pytestmark = pytest.mark.e2e
CLIENTS = 1000
PER_KEY = 100  # RIVERBED_LIVE_CONNECTIONS_PER_CALLER's default


async def follow(
    client: httpx.AsyncClient,
    url: str,
    key: str,
    ready: asyncio.Event,
    ready_count: list[int],
    page: str,
) -> float | None:
    """Open a stream, count it ready, and return when its first update for ``page`` arrives
    (the monotonic time), or None if the stream ends first."""
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "ready":
                ready_count[0] += 1
                if ready_count[0] == CLIENTS:
                    ready.set()
            elif line.startswith("data:") and event == "metric" and page in line:
                return time.monotonic()
    return None


def test_a_thousand_clients_get_an_update_while_the_api_keeps_answering(
    pipeline: Pipeline,
) -> None:
    keys = key_store(Settings(data_dir=pipeline.data_dir))
    viewers = [
        keys.create(f"viewer {i}", ROLES["viewer"], roles=["viewer"])[0]
        for i in range(CLIENTS // PER_KEY)
    ]
    page = f"/fanout/{uuid.uuid4().hex[:8]}"
    url = f"{pipeline.base_url}/v1/live/metrics?stream=pageviews&field=*&group={page}"

    async def scenario() -> tuple[list[float | None], float, list[int]]:
        ready = asyncio.Event()
        ready_count = [0]
        limits = httpx.Limits(max_connections=CLIENTS + 10)
        timeout = httpx.Timeout(60)
        async with (
            httpx.AsyncClient(limits=limits, timeout=timeout) as viewers_http,
            httpx.AsyncClient(
                base_url=pipeline.base_url, headers=pipeline.headers, timeout=10
            ) as api,
        ):
            tasks = [
                asyncio.create_task(
                    follow(viewers_http, url, viewers[i // PER_KEY], ready, ready_count, page)
                )
                for i in range(CLIENTS)
            ]
            await asyncio.wait_for(ready.wait(), 120)
            statuses = [(await api.get("/readyz")).status_code]
            now = time.time_ns() // 1_000_000
            event = {"user_id": "u1", "page": page, "load_ms": 1.0, "ts": now}
            posted = time.monotonic()
            answer = await api.post("/v1/streams/pageviews/events", json=event)
            statuses.append(answer.status_code)
            statuses.append((await api.get("/readyz")).status_code)
            received = await asyncio.wait_for(asyncio.gather(*tasks), WINDOW_SECONDS * 6)
            return list(received), posted, statuses

    received, posted, statuses = asyncio.run(scenario())
    assert statuses == [200, 202, 200]
    assert all(at is not None for at in received), "a stream ended before the update"
    delays = sorted(at - posted for at in received if at is not None)
    print(
        f"{CLIENTS} clients: update received p50 {delays[len(delays) // 2]:.2f}s, "
        f"max {delays[-1]:.2f}s after the POST"
    )
    assert len(received) == CLIENTS
