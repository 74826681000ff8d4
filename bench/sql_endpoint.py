"""The analysts' ClickHouse endpoint (api.sql_gateway) against the engine and in-process chdb.

Starts the embedded engine (riverbed.chserver) and the ``sql`` process on a fresh data dir,
then prints, in one run, the latency of a small query and the rate of a 1 M-row Native read
three ways: through the analysts' endpoint (key check, fence, limits, relay), straight to the
engine's front, and on an in-process chdb connection (the ceiling).

    .venv/bin/python -m bench.sql_endpoint --queries 500 --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx

from bench.clickhouse_front import percentiles, timed
from control.keys import key_store
from riverbed.core.settings import Settings
from riverbed.embedded import free_port, start_clickhouse, start_redis, wait_for

SMALL = "SELECT number, toString(number) FROM numbers(10)"


def wait_ping(url: str, timeout: float = 60) -> None:
    if not wait_for(lambda: httpx.get(f"{url}/ping", timeout=1).is_success, timeout):
        raise SystemExit(f"{url} did not answer /ping")


def rate(query: Callable[[], int]) -> float:
    started = time.perf_counter()
    rows = query()
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    big = f"SELECT number, toString(number) AS s FROM numbers({args.rows})"

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        engine = start_clickhouse(data_dir)
        valkey = start_redis(data_dir)
        port = free_port()
        key, _ = key_store(Settings(data_dir=data_dir)).create("bench", ["query:sql"])
        gateway = subprocess.Popen(
            [sys.executable, "-m", "riverbed.cli", "run", "sql"],
            env={
                **os.environ,
                "RIVERBED_DATA_DIR": str(data_dir),
                "CLICKHOUSE_URL": engine.url,
                "REDIS_URL": valkey.url,
                "RIVERBED_SQL_PORT": str(port),
                "RIVERBED_SQL_MAX_THREADS": "2",  # as the engine gets without the endpoint
                "RIVERBED_SQL_AUDIT": "false",  # no API here to make the catalog; off the path
            },
        )
        try:
            wait_ping(f"http://127.0.0.1:{port}")
            results = {}
            for name, client in (
                (
                    "analysts' endpoint",
                    clickhouse_connect.get_client(
                        host="127.0.0.1", port=port, username="bench", password=key
                    ),
                ),
                ("engine's front", clickhouse_connect.get_client(dsn=engine.url)),
            ):
                timed(lambda client=client: client.query(SMALL), 20)  # warm up
                small = timed(lambda client=client: client.query(SMALL), args.queries)
                texts = iter(range(10**9))  # each text new: the fence decides every time

                def distinct_query(client: Any = client, texts: Iterator[int] = texts) -> Any:
                    return client.query(f"{SMALL} /* {next(texts)} */")

                distinct = timed(distinct_query, args.queries)

                def big_read(client: Any = client) -> int:
                    return int(client.query(big).row_count)

                read = rate(big_read)
                results[name] = (small, distinct, read)
        finally:
            gateway.terminate()
            gateway.wait(10)
            engine.stop()
            valkey.stop()

        import chdb

        (data_dir / "inproc").mkdir()
        connection = chdb.connect(str(data_dir / "inproc"))
        timed(lambda: connection.query(SMALL, "Native"), 20)
        ceiling = timed(lambda: connection.query(SMALL, "Native"), args.queries)
        ceiling_rate = rate(lambda: (connection.query(big, "Native"), args.rows)[1])

    for name, (small, distinct, read) in results.items():
        print(f"small query, {name:<20} repeated: {percentiles(small)}")
        print(f"small query, {name:<20} each new:  {percentiles(distinct)}")
        print(f"{args.rows:,} rows Native, {name:<20} {read:,.0f} rows/s")
    print(f"small query, {'in-process chdb':<20} repeated: {percentiles(ceiling)}")
    print(f"{args.rows:,} rows Native, {'in-process chdb':<20} {ceiling_rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
