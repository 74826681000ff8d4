"""Read the shell examples out of the README and the docs, run them, and judge their answers.

The README check (``tests/e2e/test_doc_examples.py``) runs every ```` ```sh ```` block of
``README.md`` and ``docs/*.md`` as written, in order, in one bash session (so ``AUTH`` set in one
block is there in the next), against a live ``riverbed up --demo``. The only change made to the
text is the ports: ``localhost:8080`` and ``127.0.0.1:8080`` point at the stack under test, and
so does ``8123`` (the analysts' ClickHouse port) wherever it stands as a number.

What a command should answer is taken from the document itself:

- every ``curl`` must get a 2xx, unless its documented answer says otherwise;
- a ``# {...}`` comment on a command's lines documents its JSON answer, ``...`` standing for
  any value (``# {"access_token": ..., "refresh_token": ...}``);
- a ```` ```json ```` block right after a ``sh`` block (nothing but blank lines between)
  documents the answer of that block's last ``curl``, its ``"status"`` member the HTTP status.

A documented answer matches when every member it names is in the real answer with a matching
value: objects member by member, arrays of the same length element by element, anything else
equal. Placeholders: ``...`` (or ``"…"``) matches any value, ``[...]`` any array, and a string
with ``…`` in it any value but null (a generated id, a message cut short).

A block that cannot run (placeholders, an interactive prompt) says so in a comment right
before it: ``<!-- doc-check: skip, <why> -->``; a skip without a reason is an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"^<!--\s*doc-check:\s*skip(?P<reason>.*?)-->\s*$")
HOSTS = re.compile(r"\b(localhost|127\.0\.0\.1):8080\b")
SQL_PORT = re.compile(r"\b8123\b")
ANY = "…"


class DocError(Exception):
    """The document itself is malformed for the check (a skip without a reason, bad JSON)."""


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    text: str
    skip: str | None = None  # the reason, when marked as not runnable

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


@dataclass
class CurlCall:
    """One ``curl`` in the documents, in the order the script runs them."""

    where: str
    command: str
    expected: Any = None  # the documented JSON answer, if any
    status: int | None = None  # the documented HTTP status, if any


@dataclass
class Examples:
    script: str
    calls: list[CurlCall] = field(default_factory=list)
    skipped: list[Block] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the skip marker right before it."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opened = FENCE.match(lines[index])
        if not opened:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        skip = None
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = SKIP.match(lines[before].strip()) if before >= 0 else None
        if marker:
            skip = marker.group("reason").strip(" ,:—-")
            if not skip:
                raise DocError(f"{path.name}:{before + 1}: a doc-check skip needs a reason")
        blocks.append(Block(path, start + 1, opened.group(1), "\n".join(body) + "\n", skip))
        index += 1
    return blocks


def logical_commands(text: str) -> list[tuple[str, str]]:
    """``(command, trailing comments)`` per shell command: backslash continuations and quotes
    spanning lines are joined; comments are collected, not run."""
    commands: list[tuple[str, str]] = []
    current: list[str] = []
    comments: list[str] = []
    quote: str | None = None
    for line in text.splitlines():
        code, comment = _split_comment(line, quote)
        quote = _open_quote(code, quote)
        current.append(code)
        if comment:
            comments.append(comment)
        if quote is None and not code.rstrip().endswith("\\"):
            command = "\n".join(current).strip()
            if command:
                commands.append((command, " ".join(comments)))
            current, comments = [], []
    return commands


def _split_comment(line: str, quote: str | None) -> tuple[str, str]:
    state = quote
    for position, char in enumerate(line):
        if state is None and char == "#" and (position == 0 or line[position - 1].isspace()):
            return line[:position], line[position + 1 :].strip()
        if char in "'\"" and state in (None, char):
            state = None if state == char else char
    return line, ""


def _open_quote(code: str, quote: str | None) -> str | None:
    state = quote
    for char in code:
        if char in "'\"" and state in (None, char):
            state = None if state == char else char
    return state


def documented_json(text: str, where: str) -> Any:
    """A documented answer as data: bare ``...`` becomes a matches-anything placeholder."""
    try:
        value, _ = json.JSONDecoder().raw_decode(
            re.sub(r"(?<![\w\"])\.\.\.(?![\w\"])", lambda _: f'"{ANY}"', text.strip())
        )
        return value  # text after the JSON (a comment's prose) is not part of it
    except json.JSONDecodeError as exc:
        raise DocError(f"{where}: the documented answer is not JSON: {exc}") from None


def collect(paths: list[Path], port: int, sql_port: int = 8123) -> Examples:
    """The script that runs every runnable ``sh`` block of ``paths``, and the curls it makes."""
    examples = Examples(script="")
    parts: list[str] = []
    for path in paths:
        blocks = read_blocks(path)
        for position, block in enumerate(blocks):
            if block.info != "sh":
                continue
            examples.blocks.append(block)
            if block.skip:
                examples.skipped.append(block)
                continue
            block_calls = []
            for command, comment in logical_commands(block.text):
                for _ in re.finditer(r"(?:^|[\s;(|&])curl\s", command):
                    call = CurlCall(block.where, command)
                    if comment.startswith("{"):
                        call.expected = documented_json(comment, block.where)
                    block_calls.append(call)
            following = blocks[position + 1] if position + 1 < len(blocks) else None
            if (
                following
                and following.info == "json"
                and block_calls
                and _adjacent(path, block, following)
            ):
                last = block_calls[-1]
                last.expected = documented_json(following.text, following.where)
                if isinstance(last.expected, dict) and isinstance(last.expected.get("status"), int):
                    last.status = last.expected["status"]
            examples.calls.extend(block_calls)
            text = SQL_PORT.sub(str(sql_port), HOSTS.sub(f"127.0.0.1:{port}", block.text))
            parts.append(f"echo '### {block.where}' >&2\n{text}")
    examples.script = "\n".join(parts)
    return examples


def _adjacent(path: Path, block: Block, following: Block) -> bool:
    lines = path.read_text().splitlines()
    end = block.line + block.text.count("\n")  # the closing fence, 0-based index + 1
    between = lines[end + 1 : following.line - 1]
    return all(not line.strip() for line in between)


def mismatches(expected: Any, actual: Any, at: str = "") -> list[str]:
    """Where ``actual`` differs from the documented ``expected`` (see the module docstring)."""
    if expected == ANY:
        return []
    if isinstance(expected, str) and ANY in expected:
        return [] if actual is not None else [f"{at or '/'}: documented a value, got null"]
    if expected == [ANY]:
        return [] if isinstance(actual, list) else [f"{at or '/'}: documented an array"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{at or '/'}: documented an object, got {json.dumps(actual)[:80]}"]
        problems = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{at}/{key}: documented, missing from the answer")
            else:
                problems += mismatches(value, actual[key], f"{at}/{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [
                f"{at or '/'}: documented {len(expected)} items, got {json.dumps(actual)[:120]}"
            ]
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in mismatches(e, a, f"{at}/{i}")
        ]
    if expected != actual or type(expected) is not type(actual):
        return [f"{at or '/'}: documented {json.dumps(expected)}, got {json.dumps(actual)[:120]}"]
    return []
