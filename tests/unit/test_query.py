"""check_sql: one read-only statement per request, nothing else."""

from __future__ import annotations

import pytest

from api.query import UnsafeQuery, check_sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select count() from events_pageviews",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SHOW TABLES",
        "DESCRIBE TABLE events_pageviews",
        "DESC events_pageviews",
        "EXPLAIN SELECT 1",
        "EXISTS TABLE metrics",
    ],
)
def test_read_statements_are_accepted_unchanged(sql: str) -> None:
    assert check_sql(sql) == sql


@pytest.mark.parametrize("sql", ["SELECT 1;", "SELECT 1 ;;", "  SELECT 1 ; \n"])
def test_trailing_semicolons_and_whitespace_are_stripped(sql: str) -> None:
    assert check_sql(sql) == "SELECT 1"


def test_comments_are_stripped() -> None:
    sql = "-- top ten pages\nSELECT page /* the path */ FROM t -- trailing\n;"
    assert check_sql(sql) == "SELECT page   FROM t"


def test_leading_comment_does_not_hide_the_statement_kind() -> None:
    with pytest.raises(UnsafeQuery, match="DROP"):
        check_sql("/* harmless */ DROP TABLE t")


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE events_pageviews",
        "INSERT INTO t VALUES (1)",
        "ALTER TABLE t DELETE WHERE 1",
        "TRUNCATE TABLE t",
        "CREATE TABLE t (x Int8) ENGINE = Memory",
        "SYSTEM SHUTDOWN",
    ],
)
def test_write_statements_are_rejected(sql: str) -> None:
    with pytest.raises(UnsafeQuery, match="is not allowed"):
        check_sql(sql)


def test_rejection_names_the_statement_kind_in_upper_case() -> None:
    with pytest.raises(UnsafeQuery, match=r"^DROP is not allowed"):
        check_sql("drop table t")


@pytest.mark.parametrize("sql", ["SELECT 1; DROP TABLE t", "SELECT 1; SELECT 2;"])
def test_multiple_statements_are_rejected(sql: str) -> None:
    with pytest.raises(UnsafeQuery, match="one statement"):
        check_sql(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t WHERE page = 'a;b'",
        "SELECT 'it''s; fine'",
        r"SELECT 'escaped \' quote; still a string'",
    ],
)
def test_semicolon_inside_a_string_literal_is_allowed(sql: str) -> None:
    assert check_sql(sql) == sql


def test_semicolon_after_a_string_literal_is_still_a_second_statement() -> None:
    with pytest.raises(UnsafeQuery, match="one statement"):
        check_sql("SELECT 'a'; DROP TABLE t")


@pytest.mark.parametrize(
    "sql", ["SELECT 1 FORMAT JSON", "select 1 format CSV ;", "SELECT 1 FORMAT TabSeparated\n"]
)
def test_format_clause_is_rejected(sql: str) -> None:
    with pytest.raises(UnsafeQuery, match="FORMAT"):
        check_sql(sql)


def test_functions_starting_with_format_are_allowed() -> None:
    sql = "SELECT formatDateTime(now(), '%Y')"
    assert check_sql(sql) == sql


def test_into_outfile_is_rejected() -> None:
    with pytest.raises(UnsafeQuery, match="INTO OUTFILE"):
        check_sql("SELECT * FROM t INTO OUTFILE '/tmp/x.csv'")


@pytest.mark.parametrize("sql", ["", "   ", ";", " ;; ", "-- only a comment", "/* */"])
def test_empty_query_is_rejected(sql: str) -> None:
    with pytest.raises(UnsafeQuery, match="empty"):
        check_sql(sql)


@pytest.mark.parametrize("sql", ["SELECT 'a--b' AS x", "SELECT '/* not a comment */' AS x"])
def test_comment_markers_inside_a_string_literal_are_kept(sql: str) -> None:
    assert check_sql(sql) == sql
