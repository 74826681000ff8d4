"""With Redis down, the live endpoints say so (503) instead of a 200 with an empty stream."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from riverbed.embedded import start_redis
from tests.conftest import Engines, admin_key, bearer, start_components

pytestmark = pytest.mark.integration


def test_live_endpoints_answer_503_when_redis_is_down(engines: Engines, tmp_path: Path) -> None:
    valkey = start_redis(tmp_path)  # a Redis of its own, so stopping it harms no other test
    env = {"KAFKA_BOOTSTRAP": engines.kafka.url, "REDIS_URL": valkey.url}
    try:
        supervisor, base = start_components(tmp_path, env, ["api"], timeout=90)
    except AssertionError:
        valkey.stop()
        raise
    try:
        valkey.stop()
        response = httpx.get(
            f"{base}/v1/live/metrics", headers=bearer(admin_key(tmp_path)), timeout=10
        )
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"]
    finally:
        supervisor.stop()
        valkey.stop()
