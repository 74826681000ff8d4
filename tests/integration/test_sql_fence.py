"""The /v1/query fence against a hostile corpus, decided by ClickHouse's parser (in chdb).

Every statement of the corpus is refused with :class:`QueryRefused` (the 400 of the route), and
nothing it tried happened: no table dropped or created, no file written. Read statements pass,
each as the one canonical statement ClickHouse printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.sql_fence import QueryRefused, fence
from riverbed.core.clickhouse import ChdbEngine

pytestmark = pytest.mark.integration

DB = "riverbed"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbEngine]:
    engine = ChdbEngine(Path(tmp_path_factory.mktemp("fence-chdb")))
    engine.command(f"CREATE DATABASE IF NOT EXISTS {DB}")
    engine.command(f"CREATE TABLE IF NOT EXISTS {DB}.events_pv (x Int32) ENGINE = Memory")
    engine.command(f"CREATE TABLE IF NOT EXISTS {DB}.audit (at Int32) ENGINE = Memory")
    yield engine
    engine.close()


READS = [
    "SELECT 1",
    "select count() from riverbed.events_pv",
    "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
    "SELECT * FROM riverbed.events_pv UNION ALL SELECT number FROM numbers(3)",
    "SELECT 'a;b', $$DROP TABLE x$$, 'INTO OUTFILE'",  # in strings: data, not statements
    "SELECT 1; ",
    "SELECT 1 -- a comment; DROP TABLE riverbed.events_pv\n",
    "SELECT /* ; DROP */ 1",
    "SHOW TABLES FROM riverbed",
    "DESCRIBE TABLE riverbed.events_pv",
    "DESC riverbed.events_pv",
    "EXISTS TABLE riverbed.events_pv",
    "EXPLAIN SELECT 1",
    "SELECT name, type FROM system.columns WHERE database = 'riverbed'",
    "SELECT name FROM system.tables",
    "SELECT formatDateTime(now(), '%F')",
    "SELECT x FROM riverbed.events_pv AS e JOIN (SELECT 1 AS x) AS y USING x",
]

HOSTILE = [
    # more than one statement, however hidden
    "SELECT 1; DROP TABLE riverbed.events_pv",
    "SELECT 1;DROP TABLE riverbed.events_pv;",
    "SELECT 1 /* */; DROP TABLE riverbed.events_pv",
    "SELECT '\\''; DROP TABLE riverbed.events_pv; SELECT ''",
    "SELECT $$;$$; DROP TABLE riverbed.events_pv",
    "SELECT `a;b` FROM (SELECT 1 AS `a;b`); DROP TABLE riverbed.events_pv",
    "SELECT 1 -- \n; DROP TABLE riverbed.events_pv",
    "SELECT 1 /* /* nested */ */; DROP TABLE riverbed.events_pv",
    "SELECT 1; SET readonly = 0",
    "SELECT 1; SELECT 2",
    # not a read
    "DROP TABLE riverbed.events_pv",
    "TRUNCATE TABLE riverbed.events_pv",
    "INSERT INTO riverbed.events_pv VALUES (1)",
    "INSERT INTO riverbed.events_pv SELECT 1",
    "ALTER TABLE riverbed.events_pv DELETE WHERE 1",
    "ALTER TABLE riverbed.events_pv ADD COLUMN y Int32",
    "CREATE TABLE riverbed.evil (x Int32) ENGINE = Memory",
    "CREATE VIEW riverbed.v AS SELECT 1",
    "CREATE DATABASE evil",
    "RENAME TABLE riverbed.events_pv TO riverbed.gone",
    "OPTIMIZE TABLE riverbed.events_pv FINAL",
    "SET readonly = 0",
    "SET max_memory_usage = 0",
    "USE system",
    "SYSTEM FLUSH LOGS",
    "SYSTEM SHUTDOWN",
    "KILL QUERY WHERE 1",
    "GRANT ALL ON *.* TO default",
    "CREATE USER evil IDENTIFIED BY 'x'",
    "ATTACH TABLE riverbed.x FROM '/etc' (x String) ENGINE = File(CSV)",
    "DETACH TABLE riverbed.events_pv",
    "EXCHANGE TABLES riverbed.events_pv AND riverbed.audit",
    "BACKUP TABLE riverbed.events_pv TO File('/tmp/b')",
    "DELETE FROM riverbed.events_pv WHERE 1",
    "UPDATE riverbed.events_pv SET x = 1 WHERE 1",
    "WATCH riverbed.events_pv",
    "CHECK TABLE riverbed.events_pv",
    "UNDROP TABLE riverbed.events_pv",
    # settings, formats and files chosen by the analyst
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_execution_time = 0",
    "SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0)",
    "SELECT 1 FORMAT CSV",
    "SELECT 1 FORMAT JSONEachRow",
    "SELECT 1 INTO OUTFILE '/tmp/fence-was-here'",
    "SELECT 1 INTO OUTFILE '/tmp/fence-was-here' TRUNCATE FORMAT CSV",
    "EXPLAIN SELECT 1 SETTINGS readonly = 0",
    "EXPLAIN PIPELINE header = 1 SELECT 1",
    # table functions in every position
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/', CSV, 'a String')",
    "SELECT * FROM s3('http://127.0.0.1:9/b/k', CSV)",
    "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "SELECT * FROM remoteSecure('127.0.0.1:9', system.one)",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM merge('riverbed', '.*')",
    "SELECT * FROM executable('ls', TSV, 'a String')",
    "SELECT * FROM input('a String')",
    "SELECT * FROM view(SELECT 1)",
    "SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:9', 'd', 't', 'u', 'p')",
    "SELECT * FROM hdfs('hdfs://x/y', CSV)",
    "SELECT * FROM jdbc('x', 'y')",
    "SELECT * FROM odbc('x', 'y')",
    "SELECT * FROM dictionary('d')",
    "SELECT * FROM format(CSV, 'a\\n1')",
    "SELECT * FROM fileCluster('c', '/etc/passwd')",
    "SELECT * FROM azureBlobStorage('x', 'y', 'z')",
    "SELECT * FROM riverbed.events_pv JOIN file('/etc/passwd', 'LineAsString') AS f ON 1",
    "SELECT * FROM riverbed.events_pv WHERE x IN "
    "(SELECT 1 FROM url('http://127.0.0.1:9/', CSV, 'a Int32'))",
    "WITH f AS (SELECT * FROM file('/etc/passwd', 'LineAsString')) SELECT * FROM f",
    "SELECT (SELECT count() FROM file('/etc/passwd', 'LineAsString'))",
    "SELECT 1 UNION ALL SELECT 1 FROM file('/etc/passwd', 'LineAsString')",
    "DESCRIBE TABLE file('/etc/passwd', 'LineAsString')",
    "DESCRIBE url('http://127.0.0.1:9/', CSV)",
    "DESC (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
    "EXPLAIN SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "SELECT length(file('/etc/hostname'))",
    # system tables beyond schemas
    "SELECT query FROM system.processes",
    "SELECT * FROM system.query_log",
    "SELECT * FROM system.users",
    "SELECT * FROM system.grants",
    "SELECT * FROM system.disks",
    "SELECT * FROM system.stack_trace",
    "SELECT * FROM `system`.`processes`",
    "SELECT * FROM system.processes AS p JOIN system.one AS o ON 1",
    "SELECT * FROM riverbed.events_pv WHERE x IN (SELECT 1 FROM system.processes)",
    "DESCRIBE TABLE system.processes",
    "SELECT 1 WHERE 'x' IN system.processes",
    "SELECT 1 WHERE ('q', 1) IN (system.processes)",
    "SELECT * FROM information_schema.processes",
    # the audit trail without audit:read
    "SELECT * FROM riverbed.audit",
    "SELECT * FROM riverbed.events_pv JOIN riverbed.audit ON 1",
    "SELECT * FROM `riverbed`.`audit`",
    "SELECT 1 WHERE 'key:x' IN riverbed.audit",
    "SELECT riverbed.audit.actor FROM riverbed.events_pv",
    # not SQL, or too deep to parse
    "",
    "   ",
    ";",
    "-- only a comment",
    "/* */",
    "SELEC 1",
    "SELECT (" * 3000 + "1" + ")" * 3000,
    "SELECT " + "/*" * 30000,
    "SELECT 1 + " * 20000 + "1",
    "SELECT '" + "a" * 10 + "\\",
]


@pytest.mark.parametrize("sql", READS)
def test_read_statements_pass_as_one_canonical_statement(engine: ChdbEngine, sql: str) -> None:
    canonical = fence(engine, sql, DB, audit_allowed=False)
    assert ";" not in canonical.replace("';'", "").replace("'a;b'", "")
    engine.query(canonical, {"readonly": 1})  # and it runs


@pytest.mark.parametrize("sql", HOSTILE)
def test_hostile_statements_are_refused(engine: ChdbEngine, sql: str) -> None:
    with pytest.raises(QueryRefused):
        fence(engine, sql, DB, audit_allowed=False)


def test_the_corpus_is_large_and_nothing_in_it_happened(engine: ChdbEngine) -> None:
    assert len(HOSTILE) >= 100
    tables = {r[0] for r in engine.query(f"SHOW TABLES FROM {DB}").rows}
    assert tables == {"events_pv", "audit"}
    databases = {r[0] for r in engine.query("SHOW DATABASES").rows}
    assert "evil" not in databases
    assert not Path("/tmp/fence-was-here").exists()


def test_the_audit_trail_is_readable_with_audit_read(engine: ChdbEngine) -> None:
    assert fence(engine, "SELECT * FROM riverbed.audit", DB, audit_allowed=True)
