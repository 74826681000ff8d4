"""One error tree: every Riverbed exception descends from RiverbedError and renders the same way."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from api.problems import EXCEPTION_HANDLERS, Problem
from riverbed.core import errors
from riverbed.core.errors import (
    Conflict,
    FieldProblem,
    Invalid,
    NotFound,
    RiverbedError,
    Unavailable,
    join_pointer,
    pointer,
)
from schemas.catalog import StreamNotFound
from schemas.compatibility import Incompatibility
from schemas.registry_errors import SchemaIncompatible, SubjectNotFound
from streams.agents import OutputNotAcknowledged

PACKAGES = ("riverbed", "api", "schemas", "streams", "sinks", "connectors", "notifier", "control")
BRANCHES = (NotFound, Conflict, Invalid, Unavailable)


def riverbed_exceptions() -> Iterator[type[BaseException]]:
    """Every exception class defined (not imported) in Riverbed's packages."""
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names = [package_name] + [
            m.name for m in pkgutil.walk_packages(package.__path__, f"{package_name}.")
        ]
        for name in names:
            module = importlib.import_module(name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == name:
                    yield cls


def test_every_public_exception_descends_from_riverbed_error() -> None:
    strays = [
        f"{cls.__module__}.{cls.__name__}"
        for cls in riverbed_exceptions()
        if not issubclass(cls, RiverbedError) and not cls.__name__.startswith("_")
    ]
    assert strays == []


def test_the_tree_has_four_branches_under_one_root_as_its_docstring_draws() -> None:
    doc = errors.__doc__ or ""
    for branch in (RiverbedError, *BRANCHES):
        assert branch.__name__ in doc
        assert issubclass(branch, RiverbedError)
    assert {b.status for b in BRANCHES} == {404, 409, 422, 503}


def test_the_module_exports_exactly_its_public_names() -> None:
    public = {
        name
        for name, value in vars(errors).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == errors.__name__
        and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert set(errors.__all__) == public


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ((), ""),
        (("items", 2, "qty"), "/items/2/qty"),
        (("a/b",), "/a~1b"),
        (("~1",), "/~01"),
        (("",), "/"),
    ],
)
def test_pointers_escape_slash_and_tilde_as_rfc_6901_says(
    parts: tuple[str | int, ...], expected: str
) -> None:
    assert pointer(*parts) == expected
    assert join_pointer("/base", *parts) == "/base" + expected


def test_invalid_reports_every_problem_and_counts_them_in_its_detail() -> None:
    problems = [FieldProblem("/a", "is missing"), FieldProblem("/b/0", "not a number")]
    error = Invalid(problems)
    assert error.problems == problems
    assert error.detail == "2 problems; first: /a: is missing"
    assert error.extra() == {"errors": [p.to_dict() for p in problems]}
    assert [p.path for p in error.under("/events/3")] == ["/events/3/a", "/events/3/b/0"]


def test_invalid_without_a_problem_is_refused() -> None:
    with pytest.raises(ValueError):
        Invalid([])


def test_a_sentence_alone_is_one_problem_with_the_whole_input() -> None:
    error = Invalid("not a record")
    assert error.problems == [FieldProblem("", "not a record")]
    assert str(error) == "not a record"


def test_an_agent_output_failure_takes_a_message() -> None:
    error = OutputNotAcknowledged("3 outputs of orders not acknowledged: timed out")
    assert "3 outputs" in str(error)
    assert isinstance(error, RiverbedError)


def _client(error: Exception) -> TestClient:
    async def fail(request: Request) -> None:
        raise error

    app = Starlette(routes=[Route("/x", fail)], exception_handlers=EXCEPTION_HANDLERS)
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("error", "status", "title"),
    [
        (StreamNotFound("clicks"), 404, "Unknown stream"),
        (Conflict("taken"), 409, "Conflict"),
        (Invalid([FieldProblem("/a", "bad")]), 422, "Invalid input"),
        (Unavailable("broker down", retry_after=7), 503, "Unavailable"),
        (Problem(413, "Body too large", "too big", limit=10), 413, "Body too large"),
        (OutputNotAcknowledged("lost"), 500, "Internal error"),
    ],
)
def test_every_error_becomes_problem_json_in_one_place(
    error: RiverbedError, status: int, title: str
) -> None:
    response = _client(error).get("/x")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["title"], body["detail"]) == (status, title, error.detail)
    assert body["instance"] == "/x"


def test_unavailable_says_when_to_retry() -> None:
    response = _client(Unavailable("broker down", retry_after=7)).get("/x")
    assert response.headers["retry-after"] == "7"


def test_invalid_lists_every_problem_in_the_document() -> None:
    problems = [FieldProblem("/a", "bad"), FieldProblem("/b", "worse")]
    body = _client(Invalid(problems)).get("/x").json()
    assert body["errors"] == [p.to_dict() for p in problems]


def test_registry_errors_keep_confluents_error_code_beside_problem_json() -> None:
    body = _client(SubjectNotFound("subject 'x' not found")).get("/x").json()
    assert (body["status"], body["error_code"], body["message"]) == (
        404,
        40401,
        "subject 'x' not found",
    )
    incompatible = SchemaIncompatible(
        "orders-value", "BACKWARD", [Incompatibility("TYPE_MISMATCH", "/fields/0", "int vs str")]
    )
    body = _client(incompatible).get("/x").json()
    assert body["status"] == 409 and body["level"] == "BACKWARD"
    assert body["errors"] == [
        {"rule": "TYPE_MISMATCH", "path": "/fields/0", "message": "int vs str"}
    ]


def test_an_unexpected_exception_is_a_500_naming_its_type() -> None:
    body = _client(KeyError("boom")).get("/x").json()
    assert body["status"] == 500 and body["detail"].startswith("KeyError")
