"""The README check's reading of Markdown and judging of answers (tests/helpers/doc_examples)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.doc_examples import (
    ANY,
    DocError,
    collect,
    documented_json,
    logical_commands,
    mismatches,
    read_blocks,
)

DOC = """# Title

<!-- doc-check: skip, needs a terminal -->
```sh
make up
```

```sh
export AUTH=x   # the key
curl -s localhost:8080/a \\
  -d '{"a":
       1}'      # {"id": ..., "n": 1}
curl -s 127.0.0.1:8080/b
```

```json
{"status": 400, "errors": [{"path": "/x", "message": "…"}]}
```

```sh
curl -s localhost:8080/c
```

Some prose.

```json
{"never": "paired"}
```
"""


@pytest.fixture()
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "DOC.md"
    path.write_text(DOC)
    return path


def test_blocks_commands_and_documented_answers_are_read(doc: Path) -> None:
    examples = collect([doc], port=4321)
    assert [b.where for b in examples.skipped] == ["DOC.md:4"]
    assert [c.where for c in examples.calls] == ["DOC.md:8", "DOC.md:8", "DOC.md:20"]
    first, second, third = examples.calls
    assert first.expected == {"id": ANY, "n": 1} and first.status is None
    assert second.status == 400 and second.expected["errors"][0]["path"] == "/x"
    assert third.expected is None  # prose between it and the JSON: not its answer
    assert "127.0.0.1:4321/a" in examples.script and "127.0.0.1:4321/b" in examples.script
    assert "make up" not in examples.script


def test_a_skip_without_a_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "BAD.md"
    path.write_text("<!-- doc-check: skip -->\n```sh\nls\n```\n")
    with pytest.raises(DocError, match="needs a reason"):
        read_blocks(path)


def test_quotes_and_continuations_make_one_command() -> None:
    commands = logical_commands("a 'x # not a comment\n y' # real\nb \\\n  c\n")
    assert commands == [("a 'x # not a comment\n y'", "real"), ("b \\\n  c", "")]


def test_answers_are_judged_member_by_member() -> None:
    documented = documented_json('{"a": ..., "b": [1, "x…"], "c": {"d": true}}', "here")
    assert mismatches(documented, {"a": 5, "b": [1, "xyz"], "c": {"d": True, "e": 0}}) == []
    assert mismatches(documented, {"a": None, "b": [1, None], "c": {"d": True}}) == [
        "/b/1: documented a value, got null"
    ]
    assert mismatches(documented_json('{"l": [...]}', "here"), {"l": [1, 2, 3]}) == []
    assert mismatches(documented_json('{"l": [...]}', "here"), {"l": {}}) == [
        "/l: documented an array"
    ]
    assert mismatches(documented, {"a": 1, "b": [1], "c": {}}) == [
        "/b: documented 2 items, got [1]",
        "/c/d: documented, missing from the answer",
    ]
    assert mismatches({"n": 1}, {"n": 1.0}) == ["/n: documented 1, got 1.0"]
