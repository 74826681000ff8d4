"""The generic declaration store against a real Redis, with a toy kind of declaration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import BaseModel, ConfigDict, ValidationError

from riverbed.core.errors import FieldProblem, Invalid, join_pointer
from schemas.declaration_store import (
    DeclarationExists,
    DeclarationFollower,
    DeclarationNotFound,
    DeclarationStore,
    DeclaredInFile,
    Kind,
    StoreKeys,
    read_declarations_file,
)
from tests.conftest import Engines

pytestmark = pytest.mark.integration


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    threshold: int


class AlertError(Invalid):
    title = "Invalid alert"


def parse(raw: Any, where: str) -> Alert:
    try:
        return Alert.model_validate(raw)
    except ValidationError as exc:
        raise AlertError(
            [FieldProblem(join_pointer(where, *e["loc"]), e["msg"]) for e in exc.errors()]
        ) from None


KIND: Kind[Alert] = Kind(
    "alert",
    parse=parse,
    definition=lambda alert: alert.model_dump(),
    name_of=lambda alert: alert.name,
    error=AlertError,
    not_found=lambda name: DeclarationNotFound("alert", name),
    exists=lambda name, source: DeclarationExists("alert", name, source),
)


@pytest.fixture()
def store(engines: Engines) -> DeclarationStore[Alert]:
    client = redis.Redis.from_url(engines.redis.url.rsplit("/", 1)[0] + "/10")
    client.flushdb()
    return DeclarationStore(client, StoreKeys("t:defs", "t:version", "t:applied"), KIND)


def test_api_declarations_are_created_read_and_deleted_once(
    store: DeclarationStore[Alert],
) -> None:
    created = store.create({"name": "cpu", "threshold": 90})
    assert (created.value, created.source) == (Alert(name="cpu", threshold=90), "api")
    with pytest.raises(DeclarationExists):
        store.create({"name": "cpu", "threshold": 80})
    assert store.version() == 1 and not store.applied()
    store.mark_applied(1)
    assert store.applied()
    store.delete("cpu")
    with pytest.raises(DeclarationNotFound):
        store.get("cpu")


def test_a_file_sync_adds_changes_and_removes_and_the_api_cannot_touch_its_entries(
    store: DeclarationStore[Alert],
) -> None:
    assert store.sync([{"name": "a", "threshold": 1}, {"name": "b", "threshold": 2}], "f") == {
        "added": ["a", "b"],
        "changed": [],
        "removed": [],
    }
    report = store.sync([{"name": "a", "threshold": 5}], "f")
    assert report == {"added": [], "changed": ["a"], "removed": ["b"]}
    with pytest.raises(DeclaredInFile):
        store.delete("a")
    store.create({"name": "c", "threshold": 3})
    with pytest.raises(AlertError, match="already defined through the API"):
        store.sync([{"name": "a", "threshold": 5}, {"name": "c", "threshold": 3}], "f")


def test_a_bad_file_changes_nothing_and_names_every_problem(
    store: DeclarationStore[Alert], tmp_path: Path
) -> None:
    store.sync([{"name": "a", "threshold": 1}], "f")
    path = tmp_path / "alerts.yaml"
    path.write_text(
        "alerts:\n  - {name: a, threshold: x}\n  - {name: b}\n  - {name: a, threshold: 1}\n"
    )
    declared = read_declarations_file(path, "alerts", AlertError)
    with pytest.raises(AlertError) as refused:
        store.sync(declared, str(path), taken={"b"})
    assert [p.path for p in refused.value.problems] == [
        "/alerts/0/threshold",
        "/alerts/1/threshold",
    ]
    assert store.get("a").value.threshold == 1


def test_a_follower_rebuilds_its_index_on_change_marks_it_applied_and_survives_redis(
    store: DeclarationStore[Alert],
) -> None:
    follower = DeclarationFollower(store, lambda stored: sorted(stored), [], interval=0)
    assert follower.refresh() == [] and store.applied()
    store.create({"name": "disk", "threshold": 80})
    assert not store.applied()
    assert follower.refresh() == ["disk"] and store.applied()
    store.client = redis.Redis(port=1, socket_connect_timeout=0.2)  # Redis gone
    assert follower.refresh() == ["disk"]  # the last index, not a crash


def test_a_declaration_is_put_in_place_by_name_and_never_over_the_files(
    store: DeclarationStore[Alert],
) -> None:
    stored, created = store.replace("cpu", {"threshold": 90})  # the path gives the name
    assert created and stored.value == Alert(name="cpu", threshold=90)
    stored, created = store.replace("cpu", {"name": "cpu", "threshold": 70})
    assert not created and stored.value.threshold == 70 and store.version() == 2
    with pytest.raises(AlertError) as mismatch:
        store.replace("cpu", {"name": "disk", "threshold": 1})
    assert [p.path for p in mismatch.value.problems] == ["/name"]
    store.sync([{"name": "f", "threshold": 1}], "file")
    with pytest.raises(DeclaredInFile):
        store.replace("f", {"threshold": 2})
    assert store.get("f").value.threshold == 1 and store.get("cpu").value.threshold == 70
