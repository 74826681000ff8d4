"""Per-role limits and row filters of analyst queries (api.sql_limits)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.sql_limits import fixed_settings, role_limits, row_filters
from riverbed.core.settings import Settings

SETTINGS = Settings(
    sql_timeout_seconds=60,
    sql_max_result_rows=1000,
    sql_role_limits={
        "admin": {"max_execution_time": 600, "max_result_rows": 10**9},
        "etl": {"max_result_rows": 10**6, "max_threads": 4},
    },
)


def test_a_caller_without_a_listed_role_gets_the_defaults() -> None:
    assert role_limits(SETTINGS, []) == role_limits(SETTINGS, ["analyst"])
    assert role_limits(SETTINGS, ["analyst"])["max_result_rows"] == 1000


def test_several_roles_give_the_most_generous_value_of_each_limit() -> None:
    limits = role_limits(SETTINGS, ["etl", "admin"])
    assert limits["max_execution_time"] == 600
    assert limits["max_result_rows"] == 10**9
    assert limits["max_threads"] == 4
    assert role_limits(SETTINGS, ["etl"])["max_execution_time"] == 60  # default where unsaid


def test_a_client_may_lower_a_limit_never_raise_it() -> None:
    lowered = fixed_settings(SETTINGS, None, ["admin"], {"max_execution_time": "5"})
    assert lowered["max_execution_time"] == "5"
    raised = fixed_settings(SETTINGS, None, [], {"max_result_rows": "99999999"})
    assert raised["max_result_rows"] == "1000"
    assert fixed_settings(SETTINGS, None, [], {"max_threads": "0"})["max_threads"] == "1"
    assert list(lowered)[-1] == "readonly" and lowered["readonly"] == "1"


def test_unknown_or_non_positive_role_limits_are_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="unknown limits"):
        Settings(sql_role_limits={"admin": {"readonly": 0}})
    with pytest.raises(ValidationError, match="positive"):
        Settings(sql_role_limits={"admin": {"max_threads": 0}})


def test_row_filters_name_the_callers_streams_and_hide_other_streams_tables() -> None:
    assert row_filters("riverbed", None) == ""
    text = row_filters("riverbed", ["pageviews", "o'brien"])
    assert "'riverbed.dead_letters': 'stream IN (\\'o\\\\\\'brien\\', \\'pageviews\\')'" in text
    assert "'system.tables'" in text and "'system.columns'" in text
    assert "stream IN" not in row_filters("riverbed", [])  # no stream at all: no rows
