"""One store for what users declare (metrics now; alerts and connectors next): a Redis hash
(AOF-persisted), fed by a YAML file and the API, with a version counter followers watch.

The file is the source for the declarations it names: it is applied at start and whenever it
changes, all or nothing, and declarations that disappear from it are removed. The API adds
declarations of its own; it may not overwrite or delete one the file owns, so neither source
silently undoes the other. A process that computes the declarations follows the version with
one GET a second and marks the version it applies, so the API can say when a change runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import redis
import yaml

from riverbed.core.errors import Conflict, FieldProblem, Invalid, NotFound, pointer, summarize
from riverbed.core.redis import as_text

T = TypeVar("T")
Index = TypeVar("Index")  # what a follower builds from the declarations for its process
FILE, API = "file", "api"
log = logging.getLogger(__name__)


class DeclarationExists(Conflict):
    title = "Name taken"

    def __init__(self, kind: str, name: str, source: str) -> None:
        super().__init__(f"{name!r} is already declared (source: {source}); delete it first")
        self.kind, self.name, self.source = kind, name, source

    def extra(self) -> dict[str, Any]:
        return {self.kind: self.name}


class DeclarationNotFound(NotFound):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no declared {kind} {name!r}")
        self.kind, self.name = kind, name


class DeclaredInFile(Conflict):
    """The declaration comes from the file; the API may not change it."""

    title = "Declared in the file"

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{name!r} is declared in the {kind}s file; edit the file instead")
        self.kind, self.name = kind, name


@dataclass(frozen=True)
class StoreKeys:
    """The Redis names of one kind of declaration (see ``riverbed.core.topology``)."""

    defs: str  # hash: name -> {"definition", "source", "created_at"}
    version: str  # counter, bumped on every change
    applied: str  # the version the computing process runs


@dataclass(frozen=True)
class Stored(Generic[T]):
    value: T
    source: str  # FILE or API
    created_at: int


@dataclass(frozen=True)
class Kind(Generic[T]):
    """What the store needs to know about one kind of declaration."""

    name: str  # "metric": said in errors
    parse: Callable[[Any, str], T]  # raw declaration, its pointer -> value; raises Invalid
    definition: Callable[[T], dict[str, Any]]  # the normalised form that is stored
    name_of: Callable[[T], str]
    error: Callable[[list[FieldProblem], str], Invalid]  # problems, detail -> the kind's error
    not_found: Callable[[str], DeclarationNotFound]
    exists: Callable[[str, str], DeclarationExists]


def read_declarations_file(path: Path, section: str, error: Callable[[str], Invalid]) -> list[Any]:
    """The declarations in a YAML file: a list, or a mapping with a ``section`` list."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: {exc}") from exc
    if loaded is None:
        return []
    if isinstance(loaded, dict) and isinstance(loaded.get(section), list):
        return list(loaded[section])
    if isinstance(loaded, list):
        return loaded
    raise error(f"{path}: expected a list under '{section}:'")


class DeclarationStore(Generic[T]):
    """Blocking (Redis); async callers use a thread."""

    def __init__(self, client: redis.Redis, keys: StoreKeys, kind: Kind[T]) -> None:
        self.client = client
        self.keys = keys
        self.kind = kind

    def _stored(self, blob: bytes | str) -> Stored[T] | None:
        entry = json.loads(blob)
        try:
            value = self.kind.parse(entry["definition"], "")
        except Invalid:
            return None  # what it refers to has gone (or changed under it)
        return Stored(value, entry["source"], entry["created_at"])

    def all(self) -> dict[str, Stored[T]]:
        """Every stored declaration; one that no longer parses is skipped rather than fatal."""
        out = {
            as_text(name): self._stored(blob)
            for name, blob in sorted(self.client.hgetall(self.keys.defs).items())
        }
        return {name: stored for name, stored in out.items() if stored is not None}

    def get(self, name: str) -> Stored[T]:
        """One declaration, reading and checking only its own entry."""
        blob = self.client.hget(self.keys.defs, name)
        stored = None if blob is None else self._stored(blob)
        if stored is None:
            raise self.kind.not_found(name)
        return stored

    def version(self) -> int:
        return int(self.client.get(self.keys.version) or 0)

    def applied(self) -> bool:
        """Whether the computing process runs the current declarations."""
        return int(self.client.get(self.keys.applied) or -1) >= self.version()

    def mark_applied(self, version: int) -> None:
        self.client.set(self.keys.applied, version)

    def _entry(self, value: T, source: str) -> str:
        now = time.time_ns() // 1_000_000
        definition = self.kind.definition(value)
        return json.dumps({"definition": definition, "source": source, "created_at": now})

    def create(self, raw: Any) -> Stored[T]:
        """Add an API declaration; the kind's ``exists`` error if the name is taken."""
        value = self.kind.parse(raw, "")
        name = self.kind.name_of(value)
        if not self.client.hsetnx(self.keys.defs, name, self._entry(value, API)):
            existing = json.loads(self.client.hget(self.keys.defs, name) or b"{}")
            raise self.kind.exists(name, existing.get("source", API))
        self.client.incr(self.keys.version)
        return self.get(name)

    def replace(self, name: str, raw: Any) -> tuple[Stored[T], bool]:
        """Put an API declaration under ``name``, new or in place of the API's earlier one:
        ``(what is stored, whether it was created)``. The body's name, when it gives one,
        must be ``name``; one declared in the file is changed there, not here."""
        if isinstance(raw, dict) and "name" not in raw:
            raw = {**raw, "name": name}
        value = self.kind.parse(raw, "")
        if self.kind.name_of(value) != name:
            raise self.kind.error(
                [FieldProblem("/name", f"must be {name!r}, the name in the path")],
                f"/name: must be {name!r}, the name in the path",
            )
        with self.client.pipeline(transaction=True) as pipe:
            # WATCH: a file sync between the check and the write makes the write fail, not
            # silently turn a file declaration into an API one.
            pipe.watch(self.keys.defs)
            blob = pipe.hget(self.keys.defs, name)
            if blob is not None and json.loads(blob)["source"] == FILE:
                raise DeclaredInFile(self.kind.name, name)
            pipe.multi()
            pipe.hset(self.keys.defs, name, self._entry(value, API))
            pipe.incr(self.keys.version)
            pipe.execute()
        return self.get(name), blob is None

    def delete(self, name: str) -> None:
        blob = self.client.hget(self.keys.defs, name)
        if blob is None:
            raise self.kind.not_found(name)
        if json.loads(blob)["source"] == FILE:
            raise DeclaredInFile(self.kind.name, name)
        self.client.hdel(self.keys.defs, name)
        self.client.incr(self.keys.version)

    def sync(
        self,
        declared: list[Any],
        origin: str,
        taken: Collection[str] = (),
        taken_by: str = "something else",
    ) -> dict[str, list[str]]:
        """Make the stored file declarations equal ``declared`` (read from ``origin``), all or
        nothing: any problem, and nothing changes. ``taken`` names no declaration may have
        (they belong to ``taken_by``)."""
        values = self._parse_all(declared, origin, taken, taken_by)
        report: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
        stored = {
            as_text(name): json.loads(blob)
            for name, blob in self.client.hgetall(self.keys.defs).items()
        }
        pipe = self.client.pipeline(transaction=True)
        for index, (name, value) in enumerate(values.items()):
            old = stored.get(name)
            if old is not None and old["source"] != FILE:
                message = f"{name!r} is already defined through the API"
                at = pointer(f"{self.kind.name}s", index, "name")
                raise self.kind.error([FieldProblem(at, message)], f"{origin}: {message}")
            if old is None or old["definition"] != self.kind.definition(value):
                report["changed" if old else "added"].append(name)
                pipe.hset(self.keys.defs, name, self._entry(value, FILE))
        for name, old in stored.items():
            if old["source"] == FILE and name not in values:
                report["removed"].append(name)
                pipe.hdel(self.keys.defs, name)
        if any(report.values()):
            pipe.incr(self.keys.version)
            pipe.execute()
        return report

    def _parse_all(
        self, declared: list[Any], origin: str, taken: Collection[str], taken_by: str
    ) -> dict[str, T]:
        values: dict[str, T] = {}
        problems: list[FieldProblem] = []
        section = f"{self.kind.name}s"
        for index, raw in enumerate(declared):
            try:
                value = self.kind.parse(raw, pointer(section, index))
            except Invalid as exc:
                problems += exc.problems
                continue
            name, name_path = self.kind.name_of(value), pointer(section, index, "name")
            if name in taken:
                problems.append(FieldProblem(name_path, f"is the name of {taken_by}; pick another"))
            if name in values:
                problems.append(FieldProblem(name_path, "declared twice"))
            values[name] = value
        if problems:
            raise self.kind.error(problems, f"{origin}: {summarize(problems)}")
        return values


class DeclarationFollower(Generic[T, Index]):
    """What a computing process holds of a store: ``index(all declarations)``, rebuilt when the
    version counter moves (checked at most every ``interval`` seconds), and the version it
    applies marked in the store. On a Redis error it keeps the last index: the process goes on
    computing what it knew rather than crashing while Redis restarts."""

    def __init__(
        self,
        store: DeclarationStore[T],
        index: Callable[[dict[str, Stored[T]]], Index],
        empty: Index,
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.index = index
        self.current = empty
        self.interval = interval
        self._checked = 0.0
        self._version = -1

    def refresh(self, force: bool = False) -> Index:
        now = time.monotonic()
        if not force and now - self._checked < self.interval:
            return self.current
        self._checked = now
        try:
            version = self.store.version()
            if version != self._version or force:
                self.current, self._version = self.index(self.store.all()), version
                self.store.mark_applied(version)
        except redis.RedisError as exc:
            if force:
                raise
            log.warning(
                "%ss: Redis unavailable, keeping the last ones: %s", self.store.kind.name, exc
            )
        return self.current
