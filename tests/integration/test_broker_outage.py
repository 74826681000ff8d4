"""When Kafka cannot acknowledge, ingest answers 503 with Retry-After instead of hanging."""

from __future__ import annotations

import time

import httpx
import pytest

from riverbed.embedded import free_port, start_kafka
from riverbed.supervisor import Supervisor
from tests.conftest import Engines, wait_until

pytestmark = pytest.mark.integration


def test_ingest_answers_503_with_retry_after_when_the_broker_is_down(
    engines: Engines, tmp_path: object
) -> None:
    data_dir = tmp_path  # type: ignore[assignment]
    kafka = start_kafka(data_dir)  # a broker of its own, so stopping it harms no other test
    port = free_port()
    supervisor = Supervisor(
        data_dir / "logs",
        {  # type: ignore[operator]
            "KAFKA_BOOTSTRAP": kafka.url,
            "REDIS_URL": engines.redis.url,
            "RIVERBED_DATA_DIR": str(data_dir),
            "RIVERBED_API_PORT": str(port),
            "RIVERBED_PRODUCER_TIMEOUT_MS": "3000",
        },
    )
    supervisor.add("api")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200,
            90,
            message="the API to be ready",
        )
        event = {"user_id": "u1", "page": "/", "load_ms": 1.0, "ts": time.time_ns() // 1_000_000}
        assert httpx.post(f"{base}/v1/streams/pageviews/events", json=event).status_code == 202
        kafka.stop()
        response = httpx.post(f"{base}/v1/streams/pageviews/events", json=event, timeout=30)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.headers["content-type"] == "application/problem+json"
        assert "retry" in response.json()["detail"]
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 503
    finally:
        supervisor.stop()
        kafka.stop()
