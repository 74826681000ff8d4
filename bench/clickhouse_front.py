"""The ClickHouse HTTP front (riverbed/chserver.py) against in-process chdb, in one run.

Prints the latency of a small query through the front with clickhouse-connect and on an
in-process chdb connection to the same kind of engine (the ceiling), and the rate of reading
1 M rows in Native format both ways.

    .venv/bin/python -m bench.clickhouse_front --queries 500 --rows 1000000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import clickhouse_connect
import httpx

from riverbed.embedded import wait_for

SMALL = "SELECT number, toString(number) FROM numbers(10)"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"


def timed(call: object, times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=18199)
    args = parser.parse_args()
    big = f"SELECT number, toString(number) AS s FROM numbers({args.rows})"

    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "riverbed.chserver",
                "--path",
                f"{tmp}/front",
                "--port",
                str(args.port),
            ],
        )
        try:
            ping = f"http://127.0.0.1:{args.port}/ping"
            if not wait_for(lambda: httpx.get(ping, timeout=1).is_success, 60, server):
                raise SystemExit(f"the front did not answer {ping}")
            client = clickhouse_connect.get_client(host="127.0.0.1", port=args.port)
            timed(lambda: client.query(SMALL), 20)  # warm up
            front = timed(lambda: client.query(SMALL), args.queries)
            started = time.perf_counter()
            rows = client.query(big).row_count
            front_rate = rows / (time.perf_counter() - started)
        finally:
            server.terminate()
            server.wait(10)

        import chdb

        Path(f"{tmp}/inproc").mkdir()
        connection = chdb.connect(f"{tmp}/inproc")
        timed(lambda: connection.query(SMALL, "Native"), 20)
        ceiling = timed(lambda: connection.query(SMALL, "Native"), args.queries)
        started = time.perf_counter()
        connection.query(big, "Native")
        ceiling_rate = args.rows / (time.perf_counter() - started)

    print(f"small query, through the front (clickhouse-connect): {percentiles(front)}")
    print(f"small query, in-process chdb (ceiling):              {percentiles(ceiling)}")
    print(f"{args.rows:,} rows Native, through the front: {front_rate:,.0f} rows/s")
    print(f"{args.rows:,} rows Native, in-process chdb:   {ceiling_rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
