"""Stock ClickHouse clients against the embedded engine's HTTP front (riverbed/chserver.py).

The server runs as the process it is in production, on a chdb data dir of its own; the clients
are the real ones (clickhouse-connect, sync and async) and, for clients not installed here, the
request shapes they send (@clickhouse/client's inserts, Grafana's health and schema reads).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
import zstandard
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.conftest import wait_until

pytestmark = pytest.mark.integration
BODY_LIMIT = 10_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    path = Path(tmp_path_factory.mktemp("chserver"))
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "riverbed.chserver", "--path", str(path)),
            *("--port", str(port), "--max-body-bytes", str(BODY_LIMIT)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def pinged() -> bool:
        try:
            return httpx.get(f"{base}/ping", timeout=1).text == "Ok.\n"
        except httpx.HTTPError:
            return process.poll() is not None  # died: stop waiting, the assert says why

    try:
        wait_until(pinged, 60, message="the ClickHouse front to answer /ping")
        assert process.poll() is None, (process.stderr.read() if process.stderr else b"").decode()
        yield base
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture()
def client(server: str) -> clickhouse_connect.driver.Client:
    port = int(server.rsplit(":", 1)[1])
    return clickhouse_connect.get_client(host="127.0.0.1", port=port)


@pytest.fixture()
def table(client: clickhouse_connect.driver.Client) -> str:
    name = f"t_{uuid.uuid4().hex[:8]}"
    client.command("CREATE DATABASE IF NOT EXISTS conformance")
    client.command(
        f"CREATE TABLE conformance.{name} (id UInt64, name String, score Float64, "
        "at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY id"
    )
    return f"conformance.{name}"


def test_clickhouse_connect_queries_with_parameters_and_reads_frames(
    client: clickhouse_connect.driver.Client, table: str
) -> None:
    assert client.server_version.count(".") >= 2
    rows = client.query(
        "SELECT number, toString(number) FROM numbers({n:UInt32})", parameters={"n": 3}
    )
    assert rows.result_rows == [(0, "0"), (1, "1"), (2, "2")]
    client.insert(
        table,
        [[1, "a", 0.5, 1_700_000_000_000], [2, "b", 1.5, 1_700_000_000_001]],
        column_names=["id", "name", "score", "at"],
    )
    frame = client.query_df(f"SELECT id, name, score FROM {table} ORDER BY id")
    assert frame["name"].tolist() == ["a", "b"] and frame["score"].sum() == 2.0
    arrow = client.query_arrow(f"SELECT count() AS n FROM {table}")
    assert arrow.column("n").to_pylist() == [2]


def test_the_async_client_works_too(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])

    async def ask() -> list:
        async_client = await clickhouse_connect.get_async_client(host="127.0.0.1", port=port)
        result = await async_client.query("SELECT 40 + {x:UInt8}", parameters={"x": 2})
        await async_client.close()
        return list(result.result_rows)

    assert asyncio.run(ask()) == [(42,)]


def test_a_failed_query_is_a_clickhouse_error_and_leaves_nothing_behind(
    client: clickhouse_connect.driver.Client,
) -> None:
    with pytest.raises(DatabaseError) as failed:
        client.query("SELECT throwIf(1)")
    assert "395" in str(failed.value)
    assert client.query("SELECT 1").result_rows == [(1,)]

    def max_threads(sql: str) -> str:
        return str(client.query(sql).result_rows[0][0])

    default = max_threads("SELECT getSetting('max_threads')")
    assert max_threads("SET max_threads = 1; SELECT getSetting('max_threads')") == "1"
    assert max_threads("SELECT getSetting('max_threads')") == default != "1"
    with_setting = client.query("SELECT getSetting('max_threads')", settings={"max_threads": 1})
    assert str(with_setting.result_rows[0][0]) == "1"  # a setting sent as a URL parameter
    assert max_threads("SELECT getSetting('max_threads')") == default


def test_a_slow_query_does_not_hold_up_the_next(server: str) -> None:
    """While one query sleeps, another one answers, and sees the first still running (one
    chdb session would run them one after the other)."""
    marker = f"slow_{uuid.uuid4().hex[:8]}"
    slow = threading.Thread(
        target=lambda: httpx.post(server, content=f"SELECT sleep(3) AS {marker}", timeout=30)
    )
    slow.start()
    try:
        seen = wait_until(
            lambda: (
                httpx.post(
                    server,
                    content="SELECT count() FROM system.processes "
                    f"WHERE query LIKE '%AS {marker}' AND query NOT LIKE '%system.processes%'",
                    timeout=30,
                ).text.strip()
                == "1"
            ),
            10,
            interval=0.05,
            message="the sleeping query in system.processes, seen by another query",
        )
        assert seen
    finally:
        slow.join(30)


def test_request_and_answer_compression(server: str, table: str) -> None:
    rows = b'{"id": 7, "name": "z", "score": 2, "at": "2026-01-01 00:00:00"}\n'
    for encoding, packed in (
        ("gzip", gzip.compress(rows)),
        ("zstd", zstandard.ZstdCompressor().compress(rows)),
    ):
        inserted = httpx.post(
            server,
            params={"query": f"INSERT INTO {table} FORMAT JSONEachRow"},
            content=packed,
            headers={"Content-Encoding": encoding},
        )
        assert inserted.status_code == 200, inserted.text
    answer = httpx.post(
        server,
        params={"enable_http_compression": "1", "default_format": "JSONEachRow"},
        content=f"SELECT count() AS n FROM {table}",
        headers={"Accept-Encoding": "zstd"},
    )
    assert answer.headers["content-encoding"] == "zstd"
    assert answer.json() == {"n": 2}  # httpx undid the zstd


def test_request_shapes_of_other_clients(server: str, table: str) -> None:
    """@clickhouse/client inserts with the query in the URL; Grafana's plugin reads the time
    zone, the readonly setting and the schema."""
    inserted = httpx.post(
        server,
        params={"query": f"INSERT INTO {table} FORMAT JSONEachRow"},
        content=b'{"id": 1, "name": "js", "score": 1, "at": "2026-01-01 00:00:00"}',
    )
    assert inserted.status_code == 200 and inserted.headers["x-clickhouse-query-id"]
    zone = httpx.get(server, params={"query": "SELECT timeZone()"})
    assert zone.text.strip() == zone.headers["x-clickhouse-timezone"]
    readonly = httpx.post(
        server,
        content="SELECT name, value, readonly FROM system.settings WHERE name = 'readonly' "
        "FORMAT JSONEachRow",
    )
    assert readonly.json()["name"] == "readonly"
    assert readonly.headers["x-clickhouse-format"] == "JSONEachRow"
    database, name = table.split(".")
    columns = httpx.get(
        server,
        params={
            "query": "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {t:String} ORDER BY position FORMAT JSONCompactEachRow",
            "param_db": database,
            "param_t": name,
        },
    )
    assert [json.loads(line)[0] for line in columns.text.splitlines()] == [
        "id",
        "name",
        "score",
        "at",
    ]
    described = httpx.get(server, params={"query": f"DESCRIBE TABLE {table}", "database": database})
    assert described.status_code == 200
    assert [line.split("\t")[0] for line in described.text.splitlines()] == [
        "id",
        "name",
        "score",
        "at",
    ]


def test_errors_answer_as_clickhouse_does(server: str) -> None:
    wrong = httpx.post(server, content="SELEC 1")
    assert wrong.status_code >= 400
    assert wrong.headers["x-clickhouse-exception-code"] == "62"
    assert wrong.text.startswith("Code: 62. DB::Exception:")
    empty = httpx.post(server, content="")
    assert empty.status_code == 400 and empty.headers["x-clickhouse-exception-code"] == "62"
    garbled = httpx.post(server, content=b"\x00\x01", headers={"Content-Encoding": "zstd"})
    assert garbled.status_code == 400 and garbled.headers["x-clickhouse-exception-code"] == "27"


def test_the_javascript_client_works_unmodified(server: str, table: str) -> None:
    """@clickhouse/client from npm (tests/js, installed by `make test`): ping, bound
    parameters, a compressed JSONEachRow insert, a JSON read and a ClickHouse error."""
    script = Path(__file__).parents[1] / "js" / "clickhouse_client_check.mjs"
    run = subprocess.run(
        ["node", str(script), server, table], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["ping"] is True
    assert out["params"] == [{"n": 42, "s": "it's"}]
    assert int(out["count"]) == 1
    assert out["error"]["code"] == "395"


def test_a_body_over_the_limit_is_refused_raw_or_decompressed(server: str) -> None:
    """A decompression bomb stops at the limit instead of filling the memory."""
    bomb = gzip.compress(b"\0" * (2 * BODY_LIMIT))  # about 20 KB on the wire
    for content, encoding in ((bomb, "gzip"), (b"SELECT 1 -- " + b"x" * BODY_LIMIT, None)):
        headers = {"Content-Encoding": encoding} if encoding else {}
        refused = httpx.post(server, content=content, headers=headers, timeout=30)
        assert refused.status_code == 413, refused.text
        assert refused.headers["x-clickhouse-exception-code"] == "241"
    assert httpx.post(server, content="SELECT 1").text == "1\n"
