"""One exception tree for everything Riverbed raises on purpose.

    RiverbedError                     something Riverbed detected and can explain
     ├── NotFound                     404  a named thing does not exist
     ├── Conflict                     409  the request collides with what exists
     ├── Invalid(problems)            422  the input is wrong: every problem, each at a JSON Pointer
     └── Unavailable(retry_after)     503  a dependency did not answer; the same call may work later

Domain errors subclass one of these near their domain (``StreamNotFound(NotFound)`` in
``schemas.catalog``, ``KafkaUnavailable(Unavailable)`` in ``riverbed.core.kafka``), so callers
catch by meaning and the API turns any of them into problem+json in one place
(``api/problems.py``) without knowing the domain. Errors a process cannot explain to a caller
(a broker that did not acknowledge an agent's output) derive from ``RiverbedError`` directly.

Paths are RFC 6901 JSON Pointers into the input that was wrong (``/items/2/qty``; ``""`` is the
whole document), whatever the input was: a posted event, a stream declaration, a metrics file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Conflict",
    "FieldProblem",
    "Invalid",
    "NotFound",
    "RiverbedError",
    "Unavailable",
    "join_pointer",
    "pointer",
    "summarize",
]


def pointer(*parts: str | int) -> str:
    """The JSON Pointer of ``parts`` (``pointer("items", 2, "qty") == "/items/2/qty"``).

    ``~`` and ``/`` inside a part are escaped as RFC 6901 says, so a field named ``a/b`` is
    ``/a~1b`` and never two levels.
    """
    return join_pointer("", *parts)


def join_pointer(base: str, *parts: str | int) -> str:
    """``base`` (a pointer) extended by ``parts``; on the ingest path, once per field."""
    for part in parts:
        text = str(part)
        if "~" in text or "/" in text:
            text = text.replace("~", "~0").replace("/", "~1")
        base = f"{base}/{text}"
    return base


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with an input: where (a JSON Pointer) and a sentence a person can act on."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}

    def under(self, base: str) -> FieldProblem:
        """The same problem, seen from a document that holds this input at ``base``."""
        return FieldProblem(base + self.path, self.message)


class RiverbedError(Exception):
    """The root. ``status`` and ``title`` are what an HTTP caller sees; ``detail`` says what
    happened in a sentence. Subclasses add members to the problem document via :meth:`extra`."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail or self.title

    @property
    def type(self) -> str:
        """A stable identifier of the kind of problem (RFC 9457 ``type``): one per class,
        so clients can branch on it instead of on the words of ``title``."""
        return f"urn:riverbed:problem:{_kebab(type(self).__name__)}"

    def extra(self) -> dict[str, Any]:
        """Members added to the problem+json document beside type/title/status/detail."""
        return {}

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the problem (``Retry-After``)."""
        return {}


class NotFound(RiverbedError):
    status = 404
    title = "Not found"


class Conflict(RiverbedError):
    status = 409
    title = "Conflict"


class Invalid(RiverbedError):
    """The input is wrong; ``problems`` lists every problem found, not only the first."""

    status = 422
    title = "Invalid input"

    def __init__(self, problems: Iterable[FieldProblem] | str, detail: str | None = None) -> None:
        # A sentence alone is one problem with the whole input (path ""): domain errors raised
        # deep in a parser know what is wrong before their caller knows where it sits.
        if isinstance(problems, str):
            problems = [FieldProblem("", problems)]
        self.problems: list[FieldProblem] = list(problems)
        if not self.problems:
            raise ValueError("Invalid needs at least one problem")
        super().__init__(detail or summarize(self.problems))

    def under(self, base: str) -> list[FieldProblem]:
        """The problems as seen from a document holding this input at ``base``."""
        return [problem.under(base) for problem in self.problems]

    @classmethod
    def at(cls, path: str, message: str) -> Invalid:
        """One problem at ``path``."""
        return cls([FieldProblem(path, message)])

    def extra(self) -> dict[str, Any]:
        return {"errors": [p.to_dict() for p in self.problems]}


class Unavailable(RiverbedError):
    """A dependency (broker, Redis, the catalog's writer) did not answer in time."""

    status = 503
    title = "Unavailable"

    def __init__(self, detail: str = "", retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name.lstrip("_")).lower()


def summarize(problems: list[FieldProblem]) -> str:
    """``"<path>: <message>"`` for one problem; a count and the first one for more."""
    first = problems[0]
    said = f"{first.path}: {first.message}" if first.path else first.message
    if len(problems) == 1:
        return said
    return f"{len(problems)} problems; first: {said}"
