"""Rate limits per caller, in Redis, so every API replica counts against one budget.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as a single
timestamp): one key per caller and policy holding the "theoretical arrival time", updated by a
Lua script so that the check and the update are one atomic step, and timed by Redis's own clock
so replicas with skewed clocks agree. A request is allowed while it would not push that time
more than the burst ahead of now.

Callers are counted by their credential (``key:<prefix>``, ``user:<id>``) and, when anonymous,
by client address. Logins have a policy of their own per address, on top of the per-account
lockout. Health probes are not limited. Answers carry the IETF ``RateLimit-Policy`` and
``RateLimit`` headers and the older ``RateLimit-Limit/-Remaining/-Reset`` trio; a refusal is a
429 problem with ``Retry-After``.

If Redis does not answer, requests are let through (and logged): a Redis outage must not stop
ingest, which does not otherwise need Redis to accept events.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from starlette.requests import Request

from api.auth import KeyUser, UserPrincipal
from api.endpoint import Endpoint
from riverbed.core.errors import RiverbedError
from riverbed.core.settings import Settings

log = logging.getLogger(__name__)

# KEYS[1]: the caller's key. ARGV: emission interval (µs per request), tolerance (µs: the
# burst), cost. Returns {allowed, remaining, retry_after_us, reset_us}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local ahead = new_tat - now
if ahead > tolerance then
  return {0, 0, ahead - tolerance, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((tolerance - ahead) / interval), 0, ahead}
"""


@dataclass(frozen=True)
class Policy:
    name: str
    per_second: float
    burst: int

    @property
    def window(self) -> int:
        """Seconds to refill the whole burst: the ``w`` of the RateLimit-Policy header."""
        return max(1, math.ceil(self.burst / self.per_second))

    def header(self) -> str:
        return f'"{self.name}";q={self.burst};w={self.window}'


@dataclass(frozen=True)
class Decision:
    policy: Policy
    allowed: bool
    remaining: int
    retry_after: float  # seconds
    reset: float  # seconds until the full burst is available again

    def headers(self) -> dict[str, str]:
        reset = math.ceil(self.reset)
        return {
            "RateLimit-Policy": self.policy.header(),
            "RateLimit": f'"{self.policy.name}";r={self.remaining};t={reset}',
            "RateLimit-Limit": str(self.policy.burst),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(reset),
        }


class RateLimited(RiverbedError):
    status, title = 429, "Too many requests"

    def __init__(self, decision: Decision) -> None:
        retry = max(1, math.ceil(decision.retry_after))
        super().__init__(
            f"over the {decision.policy.name} limit of {decision.policy.per_second:g} requests/s "
            f"(bursts of {decision.policy.burst}); retry in {retry} s"
        )
        self.decision = decision
        self.retry = retry

    def headers(self) -> dict[str, str]:
        return {**self.decision.headers(), "Retry-After": str(self.retry)}


class RateLimiter:
    """Checks one request against its caller's policy."""

    EXEMPT = frozenset({"healthz", "readyz"})  # probes
    LOGIN = frozenset({"login", "refresh"})

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self._script = client.register_script(_GCRA)
        self.default = Policy("default", settings.rate_limit_per_second, settings.rate_limit_burst)
        self.anonymous = Policy(
            "anonymous",
            settings.anonymous_rate_limit_per_second,
            settings.anonymous_rate_limit_burst,
        )
        per_minute = settings.login_rate_limit_per_minute
        self.login = Policy("login", per_minute / 60, max(1, int(per_minute)))
        self.roles = {
            role: Policy(role, rate, max(1, int(rate * 2)))
            for role, rate in settings.role_rate_limits.items()
        }

    def policy_for(self, endpoint: Endpoint, request: Request) -> tuple[Policy, str] | None:
        """The policy and the caller's identity under it; None for unlimited routes."""
        if endpoint.name in self.EXEMPT:
            return None
        address = request.client.host if request.client else "unknown"
        if endpoint.name in self.LOGIN:
            return self.login, f"ip:{address}"
        user = request.user
        if isinstance(user, KeyUser):
            return self._for_roles(user.info.roles), f"key:{user.info.prefix}"
        if isinstance(user, UserPrincipal):
            return self._for_roles(user.info.roles), f"user:{user.info.id}"
        return self.anonymous, f"ip:{address}"

    def _for_roles(self, roles: Iterable[str]) -> Policy:
        """The most generous policy of ``roles`` (a key's are those it was created with)."""
        policies = [self.roles[r] for r in roles if r in self.roles]
        return max(policies, key=lambda p: p.per_second) if policies else self.default

    async def check(self, endpoint: Endpoint, request: Request) -> Decision | None:
        """The decision for this request (raise :class:`RateLimited` when refused), or None
        when the route is unlimited or Redis did not answer."""
        found = self.policy_for(endpoint, request)
        if found is None:
            return None
        policy, subject = found
        interval = 1_000_000 / policy.per_second
        try:
            answer: Any = await self._script(
                # The policy's numbers are in the key: a changed limit starts a fresh budget
                # rather than inheriting a debt counted in the old one's units.
                keys=[f"ratelimit:{policy.name}:{policy.per_second:g}:{policy.burst}:{subject}"],
                args=[interval, interval * policy.burst, 1],
            )
        except redis.RedisError as exc:
            log.warning("rate limit not checked (Redis: %s); letting the request through", exc)
            return None
        allowed, remaining, retry_us, reset_us = (int(v) for v in answer)
        decision = Decision(policy, bool(allowed), remaining, retry_us / 1e6, reset_us / 1e6)
        if not decision.allowed:
            raise RateLimited(decision)
        return decision
