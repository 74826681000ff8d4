"""The analysts' ClickHouse endpoint (api.sql_gateway) with stock clients, as analysts use it.

Runs against the session's pipeline: the ``sql`` process in front of the embedded engine, keys
from its control plane, events posted through the API and stored by the ClickHouse sink.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from control.keys import ApiKeys, key_store
from control.scopes import ROLES
from riverbed.core.settings import Settings
from tests.conftest import Pipeline, wait_until
from tests.helpers.keys import new_key

pytestmark = pytest.mark.integration
# A trailing FORMAT is the client's choice here (not on /v1/query, where the corpus refuses it).
CLIENT_FORMAT = re.compile(r"^SELECT 1 FORMAT \w+$")
MARK = f"gw-{uuid.uuid4().hex[:8]}"  # this module's events, told apart from other tests'


@pytest.fixture(scope="module")
def keys(pipeline: Pipeline) -> ApiKeys:
    return key_store(Settings(data_dir=pipeline.data_dir))


@pytest.fixture(scope="module")
def analyst(keys: ApiKeys) -> str:
    return new_key(keys, ["query:sql"])


@pytest.fixture(scope="module")
def pageviews_only(keys: ApiKeys) -> str:
    return new_key(keys, ["query:sql"], streams=["pageviews"])


@pytest.fixture(scope="module")
def stored(pipeline: Pipeline) -> Iterator[None]:
    """Three pageviews and one purchase of this module, in ClickHouse."""
    now = time.time_ns() // 1_000_000
    views = [{"user_id": MARK, "page": f"/{i}", "load_ms": 1.5, "ts": now} for i in range(3)]
    purchase = {
        "order_id": MARK,
        "user_id": MARK,
        "product": "p",
        "quantity": 1,
        "price": 2.0,
        "ts": now,
    }
    with pipeline.client() as client:
        client.post("/v1/streams/pageviews/events", json=views).raise_for_status()
        client.post("/v1/streams/purchases/events", json=purchase).raise_for_status()

    def landed() -> bool:
        views = pipeline.query(
            f"SELECT count() FROM riverbed.events_pageviews WHERE user_id = '{MARK}'"
        )
        bought = pipeline.query(
            f"SELECT count() FROM riverbed.events_purchases WHERE user_id = '{MARK}'"
        )
        return views[0][0] == "3" and bought[0][0] == "1"

    wait_until(landed, 60, message="this module's events in ClickHouse")
    yield


def connect(pipeline: Pipeline, key: str, **options: object) -> clickhouse_connect.driver.Client:
    return clickhouse_connect.get_client(
        host="127.0.0.1",
        port=pipeline.sql_port,
        username="analyst",
        password=key,
        **options,
    )


def post(pipeline: Pipeline, key: str, sql: str, **params: str) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{pipeline.sql_port}/",
        params=params,
        content=sql,
        auth=("analyst", key),
        timeout=30,
    )


def test_clickhouse_connect_queries_with_params_and_compression(
    pipeline: Pipeline, analyst: str, stored: None
) -> None:
    sql = "SELECT page FROM riverbed.events_pageviews WHERE user_id = {mark:String} ORDER BY page"
    for compress in ("lz4", "zstd", False):
        client = connect(pipeline, analyst, compress=compress)
        rows = client.query(sql, parameters={"mark": MARK}).result_rows
        assert rows == [("/0",), ("/1",), ("/2",)], compress
        frame = client.query_df(sql, parameters={"mark": MARK})
        assert list(frame["page"]) == ["/0", "/1", "/2"]
        client.close()


def test_the_async_client_queries_too(pipeline: Pipeline, analyst: str, stored: None) -> None:
    async def count() -> int:
        client = await clickhouse_connect.get_async_client(
            host="127.0.0.1", port=pipeline.sql_port, username="a", password=analyst
        )
        result = await client.query(
            "SELECT count() FROM riverbed.events_purchases WHERE user_id = {m:String}",
            parameters={"m": MARK},
        )
        await client.close()
        return int(result.result_rows[0][0])

    assert asyncio.run(count()) == 1


def test_inserts_are_refused_the_ingest_path_is_the_only_writer(
    pipeline: Pipeline, analyst: str
) -> None:
    client = connect(pipeline, analyst)
    with pytest.raises(DatabaseError, match="164"):
        client.insert("riverbed.events_pageviews", [["x"]], column_names=["page"])
    refused = post(
        pipeline, analyst, "INSERT INTO riverbed.dead_letters SELECT * FROM riverbed.dead_letters"
    )
    assert refused.status_code == 403 and "Code: 497" in refused.text


def test_a_wrong_or_scopeless_key_is_refused(pipeline: Pipeline, keys: ApiKeys) -> None:
    wrong = post(pipeline, "rb_000000000000_nope", "SELECT 1")
    assert wrong.status_code == 403
    assert wrong.headers["x-clickhouse-exception-code"] == "516"
    reader = new_key(keys, ["events:read"])
    scopeless = post(pipeline, reader, "SELECT 1")
    assert scopeless.status_code == 403 and "query:sql" in scopeless.text


@pytest.mark.parametrize(
    ("sql", "params", "code"),
    [
        ("SELECT 1; SELECT 2", {}, "62"),
        ("SELECT 1 SETTINGS readonly = 0", {}, "497"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", {}, "497"),
        ("SELECT * FROM system.processes", {}, "497"),
        ("SELECT * FROM processes", {"database": "system"}, "497"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')", {}, "497"),
        ("DROP TABLE riverbed.events_pageviews", {}, "497"),
        ("SELECT 1", {"allow_ddl": "1"}, "164"),
        ("SELECT 1", {"max_bytes_before_external_group_by": "0"}, "164"),
        ("SELECT 1", {"readonly": "0"}, "164"),
        ("SELECT 1", {"additional_table_filters": "{}"}, "164"),
    ],
)
def test_what_the_fence_refuses_is_a_4xx_with_a_clickhouse_code(
    pipeline: Pipeline, analyst: str, sql: str, params: dict[str, str], code: str
) -> None:
    response = post(pipeline, analyst, sql, **params)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["x-clickhouse-exception-code"] == code, response.text


def test_formatting_settings_and_formats_are_the_clients_choice(
    pipeline: Pipeline, analyst: str
) -> None:
    response = post(
        pipeline,
        analyst,
        "SELECT toUInt64(7) AS n FORMAT JSONEachRow",
        output_format_json_quote_64bit_integers="0",
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"n": 7}
    csv = post(pipeline, analyst, "SELECT 1 AS a, 'x' AS b", default_format="CSVWithNames")
    assert csv.text == '"a","b"\n1,"x"\n'


def test_a_result_past_the_row_limit_is_refused_not_cut(pipeline: Pipeline, analyst: str) -> None:
    response = post(pipeline, analyst, "SELECT number FROM numbers(2000000)")
    assert response.status_code == 413, response.text
    assert response.headers["x-clickhouse-exception-code"] == "396"


def test_a_key_limited_to_streams_sees_only_its_streams(
    pipeline: Pipeline, pageviews_only: str, stored: None
) -> None:
    client = connect(pipeline, pageviews_only)
    count = client.query(
        "SELECT count() FROM riverbed.events_pageviews WHERE user_id = {m:String}",
        parameters={"m": MARK},
    ).result_rows[0][0]
    assert count == 3
    refused = post(pipeline, pageviews_only, "SELECT count() FROM riverbed.events_purchases")
    assert refused.status_code == 403 and "stream" in refused.text
    unqualified = post(
        pipeline, pageviews_only, "SELECT count() FROM events_purchases", database="riverbed"
    )
    assert unqualified.status_code == 403
    tables = {
        row[0]
        for row in client.query(
            "SELECT name FROM system.tables WHERE database = 'riverbed'"
        ).result_rows
    }
    assert "events_pageviews" in tables and "events_purchases" not in tables
    streams = {
        row[0] for row in client.query("SELECT DISTINCT stream FROM riverbed.metrics").result_rows
    }
    assert streams <= {"pageviews"}


def test_a_client_that_goes_away_frees_its_slot_and_its_query_stops(
    pipeline: Pipeline, keys: ApiKeys
) -> None:
    key = new_key(keys, ["query:sql"])
    tag = uuid.uuid4().hex
    # Minutes of hashing on one thread if left to run (the time limit stops it at 60 s).
    slow = f"SELECT sum(sipHash64(number)) AS {tag} FROM numbers(100000000000)"
    for _ in range(3):  # more than the key's two slots: each one must come back
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"http://127.0.0.1:{pipeline.sql_port}/",
                content=slow,
                auth=("a", key),
                timeout=httpx.Timeout(5, read=0.5),
            )
    wait_until(
        lambda: post(pipeline, key, "SELECT 1").status_code == 200,
        15,
        message="a slot for the key once its clients went away",
    )
    engine = clickhouse_connect.get_client(dsn=pipeline.supervisor.env["CLICKHOUSE_URL"])
    running = f"SELECT count() FROM system.processes WHERE position(query, '{tag}') > 0"
    wait_until(
        lambda: (
            engine.query(running + " AND NOT startsWith(query, 'SELECT count')").result_rows
            == [(0,)]
        ),
        15,
        message="the abandoned queries to be cancelled on the engine",
    )


def test_grafanas_plugin_request_shapes_are_answered(
    pipeline: Pipeline, analyst: str, stored: None
) -> None:
    """What Grafana's ClickHouse plugin sends over HTTP (clickhouse-go): Basic auth, the
    database and ``default_format=Native`` in the URL, its query timeout as
    ``max_execution_time``, the query as the body; on connect the time zone, then the health
    check and schema browsing, then a panel's query."""
    base = f"http://127.0.0.1:{pipeline.sql_port}/"
    shape = {"database": "default", "max_execution_time": "30", "default_format": "Native"}
    for sql in (
        "SELECT timeZone()",
        "SELECT 1",
        "SELECT value FROM system.settings WHERE name = 'readonly'",
        "SELECT name FROM system.databases",
        "SELECT name FROM system.tables WHERE database = 'riverbed'",
        "SELECT name, type FROM system.columns WHERE database = 'riverbed' "
        "AND table = 'events_pageviews'",
        "DESCRIBE TABLE riverbed.events_pageviews",
        "SELECT toStartOfMinute(ts) AS t, count() FROM riverbed.events_pageviews "
        "WHERE ts >= now() - INTERVAL 1 HOUR GROUP BY t ORDER BY t",
    ):
        response = httpx.post(base, params=shape, content=sql, auth=("grafana", analyst))
        assert response.status_code == 200, (sql, response.text)
        assert response.headers["x-clickhouse-format"] == "Native"
        assert response.content, sql
    readonly = connect(pipeline, analyst).query(
        "SELECT value FROM system.settings WHERE name = 'readonly'"
    )
    assert readonly.result_rows == [("1",)]  # what the plugin shows as read-only access


def test_jdbc_request_shapes_are_answered(pipeline: Pipeline, analyst: str) -> None:
    """What ClickHouse's JDBC driver sends over HTTP with ``compress=false`` (DBeaver's
    setting for it): the user and key as headers, settings in the URL, a RowBinary format."""
    response = httpx.post(
        f"http://127.0.0.1:{pipeline.sql_port}/",
        params={"database": "riverbed", "extremes": "0", "compress": "0"},
        content="SELECT name FROM system.tables WHERE database = currentDatabase() "
        "FORMAT RowBinaryWithNamesAndTypes",
        headers={"X-ClickHouse-User": "dbeaver", "X-ClickHouse-Key": analyst},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-clickhouse-format"] == "RowBinaryWithNamesAndTypes"
    assert b"events_pageviews" in response.content


def test_a_client_may_lower_a_limit_but_not_raise_it(pipeline: Pipeline, analyst: str) -> None:
    lowered = post(pipeline, analyst, "SELECT number FROM numbers(100)", max_result_rows="10")
    assert lowered.status_code == 413 and "396" in lowered.headers["x-clickhouse-exception-code"]
    raised = post(
        pipeline, analyst, "SELECT number FROM numbers(2000000)", max_result_rows="9000000"
    )
    assert raised.status_code == 413  # still the key's one million


def test_the_javascript_client_reads_and_is_refused_writes(
    pipeline: Pipeline, analyst: str, stored: None
) -> None:
    script = Path(__file__).parents[1] / "js" / "clickhouse_analyst_check.mjs"
    run = subprocess.run(
        ["node", str(script), f"http://127.0.0.1:{pipeline.sql_port}", analyst, MARK],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["ping"] is True
    assert out["pages"] == ["/0", "/1", "/2"]
    assert out["insert"]["code"] == "164", out
    assert out["drop"]["code"] == "497", out


def test_the_hostile_corpus_is_refused_quickly_and_the_loops_stay_responsive(
    pipeline: Pipeline, analyst: str
) -> None:
    """Every statement of the fence's hostile corpus, sent as an analyst's tool sends it: a
    4xx within 100 ms each, while the endpoint's ``/ping`` and the API's ``/healthz``, asked
    all along, answer within 100 ms; and the pipeline's tables are as they were."""
    from tests.integration.test_sql_fence import HOSTILE

    engine = clickhouse_connect.get_client(dsn=pipeline.supervisor.env["CLICKHOUSE_URL"])
    tables = "SELECT database, name FROM system.tables WHERE database = 'riverbed' ORDER BY name"
    before = engine.query(tables).result_rows
    probes: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=5) as client:
            while not done.is_set():
                for url in (
                    f"http://127.0.0.1:{pipeline.sql_port}/ping",
                    f"{pipeline.base_url}/healthz",
                ):
                    started = time.perf_counter()
                    client.get(url).raise_for_status()
                    probes.append(time.perf_counter() - started)
                done.wait(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    answers = []
    try:
        with httpx.Client(auth=("analyst", analyst), timeout=10) as client:
            for sql in [s for s in HOSTILE if not CLIENT_FORMAT.match(s)]:
                started = time.perf_counter()
                response = client.post(f"http://127.0.0.1:{pipeline.sql_port}/", content=sql)
                answers.append((time.perf_counter() - started, response.status_code, sql))
    finally:
        done.set()
        prober.join(10)
    let_through = [(status, sql) for _, status, sql in answers if not 400 <= status < 500]
    assert not let_through
    slow = [(round(took * 1000), sql[:80]) for took, _, sql in answers if took > 0.1]
    assert not slow, slow
    assert probes and max(probes) < 0.1, sorted(probes)[-5:]
    assert engine.query(tables).result_rows == before


def test_every_query_leaves_an_audit_record_who_what_and_how(
    pipeline: Pipeline, keys: ApiKeys
) -> None:
    key, info = keys.create("audited analyst", ["query:sql"])
    marker = uuid.uuid4().hex
    answered = post(pipeline, key, f"SELECT '{marker}' AS m")
    assert answered.status_code == 200
    refused = post(pipeline, key, f"SELECT '{marker}-x' FROM system.processes")
    assert refused.status_code == 403
    wrong = httpx.post(
        f"http://127.0.0.1:{pipeline.sql_port}/",
        content="SELECT 1",
        auth=(f"intruder-{marker}", "rb_000000000000_wrong"),
    )
    assert wrong.status_code == 403

    def recorded() -> list[dict] | None:
        with pipeline.client() as admin:
            events = admin.get(
                "/v1/audit", params={"action": "clickhouse_query", "limit": 1000}
            ).json()["events"]
        mine = [e for e in events if marker in e["details"]]
        return mine if len(mine) == 3 else None

    events = wait_until(recorded, 60, interval=0.5, message="three audit records")
    by_status = {e["status"]: e for e in events}
    ok = by_status[200]
    assert ok["actor"] == f"key:{info.prefix}" and ok["outcome"] == "success"
    assert json.loads(ok["details"])["query_id"] == answered.headers["x-clickhouse-query-id"]
    assert by_status[403]["outcome"] == "denied"
    assert {e["actor"] for e in events} == {f"key:{info.prefix}", "anonymous"}
    assert "rb_000000000000_wrong" not in json.dumps(events)  # no passwords


def test_limits_follow_the_role_a_key_was_created_with(pipeline: Pipeline, keys: ApiKeys) -> None:
    """The pipeline gives role admin three million result rows, everyone else one million."""
    admin, admin_info = keys.create("admin-role", ROLES["admin"], roles=["admin"])
    analyst, _ = keys.create("analyst-role", ROLES["analyst"], roles=["analyst"])
    assert admin_info.roles == ["admin"]
    two_million = "SELECT count() FROM (SELECT number FROM numbers(2000000))"
    rows = "SELECT number FROM numbers(2000000) FORMAT RowBinary"
    assert post(pipeline, admin, rows).status_code == 200
    assert post(pipeline, analyst, rows).status_code == 413
    assert post(pipeline, analyst, two_million).status_code == 200  # one row of result
    with pipeline.client() as client:
        listed = {k["prefix"]: k for k in client.get("/v1/keys").json()["keys"]}
    assert listed[admin_info.prefix]["roles"] == ["admin"]


def test_a_client_that_sends_no_request_head_gets_408(pipeline: Pipeline) -> None:
    """The analysts' endpoint faces the same slow clients as the API."""
    with socket.create_connection(("127.0.0.1", pipeline.sql_port), timeout=20) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 408"), answer
