"""``POST /v1/query`` with ``format``: csv, ndjson and parquet exports, streamed from the engine
without the JSON answer's row limit, behind the same fence and the analysts' limits."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from tests.conftest import Pipeline

pytestmark = pytest.mark.integration
NUMBERS = "SELECT number AS n, toString(number) AS s FROM numbers(20000)"


def export(pipeline: Pipeline, sql: str, fmt: str, **extra: object):  # type: ignore[no-untyped-def]
    with pipeline.client() as client:
        return client.post("/v1/query", json={"sql": sql, "format": fmt, **extra})


def test_csv_has_a_header_and_every_row_past_the_json_limit(pipeline: Pipeline) -> None:
    response = export(pipeline, NUMBERS, "csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="query.csv"' in response.headers["content-disposition"]
    lines = response.text.splitlines()
    assert lines[0] == '"n","s"'
    assert len(lines) == 20001  # the JSON answer stops at 10,000
    assert lines[-1] == '19999,"19999"'


def test_ndjson_quotes_64_bit_integers_as_the_json_answer_does(pipeline: Pipeline) -> None:
    response = export(
        pipeline, "SELECT toUInt64({n:UInt64}) AS n, 'x' AS s", "ndjson", params={"n": 2**63}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in response.text.splitlines()] == [
        {"n": str(2**63), "s": "x"}
    ]


def test_parquet_reads_back_with_pyarrow(pipeline: Pipeline) -> None:
    response = export(pipeline, NUMBERS, "parquet")
    assert response.status_code == 200, response.text
    table = pq.read_table(io.BytesIO(response.content))
    assert table.num_rows == 20000
    assert table.column("n").to_pylist()[-1] == 19999


def test_an_export_past_the_analysts_row_limit_is_a_413(pipeline: Pipeline) -> None:
    # past the admin role's three million (the pipeline's key is an admin's)
    response = export(pipeline, "SELECT number FROM numbers(4000000)", "csv")
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "396" in response.json()["detail"]


def test_the_fence_holds_for_exports(pipeline: Pipeline) -> None:
    response = export(pipeline, "SELECT 1; DROP TABLE riverbed.events_pageviews", "csv")
    assert response.status_code == 400
    assert response.json()["title"] == "Query not allowed"
