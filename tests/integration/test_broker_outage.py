"""When Kafka is down, ingest answers 503 with Retry-After at once instead of hanging."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from riverbed.embedded import start_kafka
from tests.conftest import Engines, admin_key, bearer, start_components, wait_until

pytestmark = pytest.mark.integration


def test_ingest_answers_503_with_retry_after_when_the_broker_is_down(
    engines: Engines, tmp_path: Path
) -> None:
    kafka = start_kafka(tmp_path)  # a broker of its own, so stopping it harms no other test
    env = {
        "KAFKA_BOOTSTRAP": kafka.url,
        "REDIS_URL": engines.redis.url,
        # Far longer than the client waits below: only the circuit breaker can answer in time.
        "RIVERBED_PRODUCER_TIMEOUT_MS": "60000",
    }
    try:
        supervisor, base = start_components(tmp_path, env, ["api"], timeout=90)
    except AssertionError:
        kafka.stop()
        raise
    headers = bearer(admin_key(tmp_path))
    try:
        event = {"user_id": "u1", "page": "/", "load_ms": 1.0, "ts": time.time_ns() // 1_000_000}
        assert (
            httpx.post(
                f"{base}/v1/streams/pageviews/events", headers=headers, json=event
            ).status_code
            == 202
        )
        kafka.stop()
        # librdkafka reports "all brokers down" as the connection drops; wait for the breaker.
        response = wait_until(
            lambda: (
                (
                    r := httpx.post(
                        f"{base}/v1/streams/pageviews/events",
                        headers=headers,
                        json=event,
                        timeout=10,
                    )
                ).status_code
                == 503
                and r
            ),
            30,
            message="ingest to answer 503",
        )
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == "application/problem+json"
        assert "unreachable" in response.json()["detail"]
        assert response.json()["event_ids"]  # retry with these: duplicates are dropped
        # Every further request is refused at once too, not after the producer's timeout.
        for _ in range(3):
            again = httpx.post(
                f"{base}/v1/streams/pageviews/events", headers=headers, json=event, timeout=10
            )
            assert again.status_code == 503
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 503
    finally:
        supervisor.stop()
        kafka.stop()
