"""Hostile input gets a 4xx problem+json naming what was wrong: never a 500, never a stall."""

from __future__ import annotations

import gzip
import json
import socket
import time
from urllib.parse import urlparse

import pytest
import zstandard

from tests.conftest import Pipeline

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
EVENTS = "/v1/streams/pageviews/events"


def page_view(**overrides: object) -> dict[str, object]:
    return {
        "user_id": "u",
        "page": "/h",
        "load_ms": 1.0,
        "ts": time.time_ns() // 10**6,
        **overrides,
    }


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (EVENTS, "[" * 100_000 + "]" * 100_000),
        (EVENTS, '{"user_id": ' + "1" * 5000 + "}"),
        ("/v1/metrics", "[" * 100_000 + "]" * 100_000),
        ("/v1/query", '{"sql": ' + "[" * 50_000 + "]" * 50_000 + "}"),
        ("/registry/subjects/x-value/versions", "{" * 50_000),
    ],
)
def test_json_too_deep_or_numbers_too_long_are_a_400(
    pipeline: Pipeline, path: str, body: str
) -> None:
    with pipeline.client() as client:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM


def test_an_event_bigger_than_a_kafka_message_is_a_413_naming_it(pipeline: Pipeline) -> None:
    events = [page_view(), page_view(page="/" + "x" * 1_000_000)]
    with pipeline.client() as client:
        response = client.post(EVENTS, json=events)
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["index"] == 1 and body["size"] > body["limit"]


@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/query", "/registry/config"])
def test_every_route_that_takes_a_body_limits_it(pipeline: Pipeline, path: str) -> None:
    oversized = json.dumps({"sql": "x" * (2 * 1024 * 1024)})
    with pipeline.client() as client:
        method = client.put if path == "/registry/config" else client.post
        response = method(path, content=oversized, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM


def test_a_client_that_stops_sending_its_body_gets_408(pipeline: Pipeline) -> None:
    url = urlparse(pipeline.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.sendall(
            f"POST {EVENTS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {pipeline.key}\r\nContent-Length: 1000\r\n\r\n[{{".encode()
        )
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 408"), answer


@pytest.mark.parametrize(
    "head",
    [b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "],
    ids=["nothing", "half-a-header"],
)
def test_a_client_that_stops_sending_its_request_head_gets_408(
    pipeline: Pipeline, head: bytes
) -> None:
    url = urlparse(pipeline.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.sendall(head)
        answer = sock.recv(4096).decode(errors="replace")
        closed = sock.recv(4096) == b""
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "application/problem+json" in answer and closed


def test_a_header_trickled_a_byte_at_a_time_gets_408(pipeline: Pipeline) -> None:
    """Each byte arrives well within any idle timeout; the head as a whole does not."""
    url = urlparse(pipeline.base_url)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.setblocking(False)
        answer = b""
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(4096)
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer:
                break
            time.sleep(0.05)  # pacing the attacker, not waiting for the server
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 10


def test_gzip_and_zstd_bodies_are_accepted(pipeline: Pipeline) -> None:
    events = json.dumps([page_view(page="/gz") for _ in range(20)]).encode()
    with pipeline.client() as client:
        for encoding, body in (
            ("gzip", gzip.compress(events)),
            ("zstd", zstandard.ZstdCompressor().compress(events)),
        ):
            response = client.post(
                EVENTS,
                content=body,
                headers={"content-type": "application/json", "content-encoding": encoding},
            )
            assert response.status_code == 202, (encoding, response.text)
            assert response.json()["accepted"] == 20


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_a_decompression_bomb_is_a_413_not_a_gigabyte(pipeline: Pipeline, encoding: str) -> None:
    inflated = b"[" + b" " * (64 * 1024 * 1024) + b"]"  # 64 MiB of JSON whitespace
    compress = gzip.compress if encoding == "gzip" else zstandard.ZstdCompressor().compress
    bomb = compress(inflated)
    assert len(bomb) < 1024 * 1024
    with pipeline.client() as client:
        response = client.post(
            EVENTS,
            content=bomb,
            headers={"content-type": "application/json", "content-encoding": encoding},
        )
    assert response.status_code == 413, response.text
    assert "decompressed" in response.json()["detail"]


@pytest.mark.parametrize(("encoding", "status"), [("br", 415), ("gzip", 400)])
def test_an_unknown_or_broken_encoding_is_named(
    pipeline: Pipeline, encoding: str, status: int
) -> None:
    with pipeline.client() as client:
        response = client.post(
            EVENTS,
            content=b"not compressed at all",
            headers={"content-type": "application/json", "content-encoding": encoding},
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
