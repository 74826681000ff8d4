"""The in-process engine (ChdbEngine): a failed query leaves nothing for the next reader, and
a slow read does not hold up the sink's inserts."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from riverbed.core.clickhouse import ChdbEngine, ClickHouseError
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbEngine]:
    engine = ChdbEngine(Path(tmp_path_factory.mktemp("engine-chdb")))
    engine.command("CREATE DATABASE IF NOT EXISTS e")
    engine.command("CREATE TABLE IF NOT EXISTS e.t (a Int32) ENGINE = MergeTree ORDER BY a")
    yield engine
    engine.close()


def test_a_failed_query_leaves_nothing_for_the_next_reader(engine: ChdbEngine) -> None:
    with pytest.raises(ClickHouseError, match="395"):
        engine.query("SELECT throwIf(1)")
    with pytest.raises(ClickHouseError):
        engine.query(
            "SELECT number FROM numbers(10) SETTINGS max_result_rows = 1, "
            "result_overflow_mode = 'throw'"
        )
    assert engine.query("SELECT 1 AS one").records() == [{"one": 1}]


def running(engine: ChdbEngine, marker: str) -> bool:
    rows = engine.query(
        "SELECT count() FROM system.processes WHERE query LIKE {m:String}",
        {"output_format_json_quote_64bit_integers": 0},
        {"m": f"%AS {marker}"},
    ).rows
    return rows[0][0] == 1


def test_a_slow_read_does_not_hold_up_an_insert(engine: ChdbEngine) -> None:
    marker = f"slow_{uuid.uuid4().hex[:8]}"
    slow = threading.Thread(target=lambda: engine.query(f"SELECT sleep(3) AS {marker}"))
    slow.start()
    try:
        wait_until(lambda: running(engine, marker), 10, interval=0.05, message="the slow read")
        engine.insert_json_rows("e", "t", [{"a": 1}, {"a": 2}])
        assert running(engine, marker)  # the insert is done and the read still runs
    finally:
        slow.join(30)
    assert engine.query(
        "SELECT count() AS n FROM e.t", {"output_format_json_quote_64bit_integers": 0}
    ).records() == [{"n": 2}]
