"""The schema registry's errors: each is a meaning of the error tree (NotFound, Invalid,
Conflict) and carries the Confluent ``error_code`` and HTTP status its clients rely on."""

from __future__ import annotations

from typing import Any

from riverbed.core.errors import Conflict, Invalid, NotFound, RiverbedError
from schemas.compatibility import Incompatibility


class RegistryError(RiverbedError):
    """Base of the registry's errors; ``code`` is the Confluent error code clients expect.

    Each error also derives from the tree's meaning (NotFound, Invalid, Conflict); ``status``
    stays Confluent's, which its clients rely on (a protected subject is a 422 there).
    """

    code = 50001
    title = "Registry error"

    def extra(self) -> dict[str, Any]:
        """Confluent's ``error_code``/``message`` for its clients beside problem+json."""
        return {**super().extra(), "error_code": self.code, "message": str(self)}


class SchemaNotFound(RegistryError, NotFound):
    """No schema is registered under that id."""

    code, status, title = 40403, 404, "Not found"


class SubjectNotFound(RegistryError, NotFound):
    code, status, title = 40401, 404, "Not found"


class VersionNotFound(RegistryError, NotFound):
    code, status, title = 40402, 404, "Not found"


class InvalidSchema(RegistryError, Invalid):
    code, status, title = 42201, 422, "Invalid schema"


class InvalidCompatibilityLevel(RegistryError, Invalid):
    code, status, title = 42203, 422, "Invalid schema"


class ProtectedSubject(RegistryError, Conflict):
    """A pipeline subject's versions are what its stream writes with; they cannot be deleted."""

    code, status, title = 42205, 422, "Invalid schema"


class SchemaIncompatible(RegistryError, Conflict):
    """The new schema breaks the subject's compatibility level; ``problems`` say where."""

    code, status, title = 409, 409, "Incompatible schema"

    def __init__(self, subject: str, level: str, problems: list[Incompatibility]) -> None:
        first = problems[0]
        super().__init__(
            f"schema is not {level} compatible with subject {subject!r}: "
            f"{first.rule} at {first.path}: {first.message}"
        )
        self.subject = subject
        self.level = level
        self.problems = problems

    def extra(self) -> dict[str, Any]:
        return {
            **super().extra(),
            "level": self.level,
            "errors": [problem.to_dict() for problem in self.problems],
        }
