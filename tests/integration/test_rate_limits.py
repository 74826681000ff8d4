"""Rate limits on a real valkey: exact bursts, atomic under concurrency, one budget per caller,
and a Redis outage that does not stop the API."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from api.auth import KeyUser
from api.ratelimit import Policy, RateLimited, RateLimiter
from api.routes import ROUTES
from control.keys import KeyInfo
from riverbed.core.settings import Settings
from riverbed.embedded import free_port
from tests.conftest import Engines, admin_key, bearer, start_components

pytestmark = pytest.mark.integration
ME = next(e for e in ROUTES if e.name == "me")
HEALTH = next(e for e in ROUTES if e.name == "healthz")


def caller(prefix: str) -> Any:
    """A request as the limiter sees it: a key's user and a client address."""
    info = KeyInfo(prefix, "k", ["streams:read"], None, None, None, None, None)  # type: ignore[arg-type]
    return SimpleNamespace(user=KeyUser(info), client=SimpleNamespace(host="10.0.0.1"))


def limiter(url: str, per_second: float, burst: int) -> RateLimiter:
    settings = Settings(rate_limit_per_second=per_second, rate_limit_burst=burst)
    return RateLimiter(aioredis.Redis.from_url(url), settings)


async def outcomes(rl: RateLimiter, request: Any, count: int) -> list[bool]:
    async def one() -> bool:
        try:
            await rl.check(ME, request)
        except RateLimited:
            return False
        return True

    return list(await asyncio.gather(*(one() for _ in range(count))))


def test_a_burst_is_allowed_exactly_then_refused_with_when_to_retry(engines: Engines) -> None:
    rl = limiter(engines.redis.url, per_second=1, burst=5)
    request = caller(uuid.uuid4().hex[:12])

    async def run() -> tuple[list[Any], RateLimited]:
        decisions = [await rl.check(ME, request) for _ in range(5)]
        with pytest.raises(RateLimited) as refused:
            await rl.check(ME, request)
        return decisions, refused.value

    decisions, refused = asyncio.run(run())
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert refused.retry == 1 and refused.headers()["Retry-After"] == "1"
    assert refused.headers()["RateLimit-Policy"] == '"default";q=5;w=5'
    assert refused.headers()["RateLimit"].startswith('"default";r=0;t=')


def test_concurrent_requests_never_overspend_the_burst(engines: Engines) -> None:
    """The check and the update are one Lua script: 50 racing requests, 10 get through."""
    rl = limiter(engines.redis.url, per_second=0.001, burst=10)
    allowed = asyncio.run(outcomes(rl, caller(uuid.uuid4().hex[:12]), 50))
    assert sum(allowed) == 10


def test_each_caller_has_a_budget_of_its_own(engines: Engines) -> None:
    rl = limiter(engines.redis.url, per_second=0.001, burst=2)

    async def run() -> tuple[list[bool], list[bool]]:
        first = await outcomes(rl, caller(uuid.uuid4().hex[:12]), 3)
        second = await outcomes(rl, caller(uuid.uuid4().hex[:12]), 3)
        return first, second

    first, second = asyncio.run(run())
    assert sum(first) == 2 and sum(second) == 2


def test_probes_are_not_limited_and_a_redis_outage_lets_requests_through(
    engines: Engines,
) -> None:
    request = caller(uuid.uuid4().hex[:12])

    async def run() -> tuple[list[bool], Any, Any]:
        rl = limiter(engines.redis.url, per_second=0.001, burst=1)
        spent = await outcomes(rl, request, 1)
        down = limiter(f"redis://127.0.0.1:{free_port()}/0", per_second=0.001, burst=1)
        return spent, await rl.check(HEALTH, request), await down.check(ME, request)

    spent, probe, during_outage = asyncio.run(run())
    assert spent == [True] and probe is None and during_outage is None


def test_the_policy_header_names_its_window() -> None:
    assert Policy("login", 20 / 60, 20).header() == '"login";q=20;w=60'


def test_the_api_answers_429_with_the_headers(engines: Engines, tmp_path: Path) -> None:
    env = {
        **engines.env,
        "RIVERBED_RATE_LIMIT_PER_SECOND": "0.01",
        "RIVERBED_RATE_LIMIT_BURST": "3",
        "RIVERBED_ANONYMOUS_RATE_LIMIT_PER_SECOND": "0.01",
        "RIVERBED_ANONYMOUS_RATE_LIMIT_BURST": "2",
    }
    supervisor, base = start_components(tmp_path, env, ["api"], timeout=90)
    try:
        with httpx.Client(base_url=base, headers=bearer(admin_key(tmp_path))) as client:
            answers = [client.get("/v1/me") for _ in range(4)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429]
            assert answers[0].headers["ratelimit-remaining"] == "2"
            refused = answers[3]
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["type"] == "urn:riverbed:problem:rate-limited"
            assert all(client.get("/readyz").status_code == 200 for _ in range(5))
        anonymous = [httpx.get(f"{base}/openapi.json").status_code for _ in range(3)]
        assert anonymous == [200, 200, 429]
    finally:
        supervisor.stop()
