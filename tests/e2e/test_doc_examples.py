"""The README check: every shell example of README.md and docs/*.md, run as written against a
live ``riverbed up --demo``, answers what the document says it answers.

See :mod:`tests.helpers.doc_examples` for what is read from the documents and how an answer is
judged. The examples run in a directory laid out as the README assumes (``.venv`` and the
data dir ``.riverbed`` beside each other), so ``.venv/bin/riverbed`` and
``$(cat .riverbed/admin.key)`` work unchanged.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.doc_examples import Examples, collect, mismatches, read_blocks
from tests.helpers.riverbed_up import RiverbedUp

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Runs before the documents' blocks: a curl that keeps each answer's headers and body for the
# judging below (and still prints the body, so ``$(curl ...)`` works), and stops ``curl -N``
# (a live stream) after a few seconds, which is then not a failure.
PREAMBLE = r"""
set -eo pipefail
export PATH="$PWD/.venv/bin:$PATH"
__calls=0
curl() {
  __calls=$((__calls + 1))
  local n=$__calls arg rc
  local extra=()
  for arg in "$@"; do [[ $arg == -N ]] && extra=(--max-time 4); done
  set +e
  command curl "${extra[@]}" -D "$RB_CALLS/$n.head" "$@" > "$RB_CALLS/$n.body"
  rc=$?
  set -e
  cat "$RB_CALLS/$n.body"
  if [[ $rc == 28 && ${#extra[@]} -gt 0 ]]; then rc=0; fi
  return $rc
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, int]]:
    root = tmp_path_factory.mktemp("readme")
    (root / ".venv").symlink_to(Path(sys.prefix))
    port = free_port()
    stack = RiverbedUp(root / ".riverbed", port, demo=True)
    try:
        stack.wait_up()
        yield root, port, stack.sql_port
    finally:
        stack.stop()


def status_of(head: Path) -> int:
    codes = re.findall(r"^HTTP/\S+ (\d{3})", head.read_text(errors="replace"), re.MULTILINE)
    assert codes, f"no HTTP status in {head.name}"
    return int(codes[-1])


def test_every_block_is_run_or_says_why_not() -> None:
    blocks = [b for path in DOCUMENTS for b in read_blocks(path) if b.info == "sh"]
    assert blocks, "no sh blocks found: the check would prove nothing"
    assert all(b.skip is None or b.skip.strip() for b in blocks)


def test_every_shell_example_answers_as_documented(workdir: tuple[Path, int, int]) -> None:
    root, port, sql_port = workdir
    examples: Examples = collect(DOCUMENTS, port, sql_port)
    calls_dir = root / "calls"
    calls_dir.mkdir()
    run = subprocess.run(
        ["bash", "-c", PREAMBLE + examples.script],
        cwd=root,
        env={**os.environ, "RB_CALLS": str(calls_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    blocks_run = re.findall(r"^### (\S+)$", run.stderr, re.MULTILINE)
    assert run.returncode == 0, (
        f"a command failed in the block at {blocks_run[-1] if blocks_run else '?'} "
        f"(exit {run.returncode}):\n{run.stderr[-3000:]}"
    )
    made = len(list(calls_dir.glob("*.head")))
    assert made == len(examples.calls), "the documents' curls and the calls made differ"
    problems = []
    for number, call in enumerate(examples.calls, start=1):
        status = status_of(calls_dir / f"{number}.head")
        body = (calls_dir / f"{number}.body").read_text(errors="replace")
        where = f"{call.where} `{call.command.splitlines()[0][:90]}`"
        if call.status is not None and status != call.status:
            problems.append(f"{where}: documented status {call.status}, got {status}: {body[:300]}")
        elif call.status is None and not 200 <= status < 300:
            problems.append(f"{where}: got {status}: {body[:300]}")
        elif call.expected is not None:
            try:
                answer = json.loads(body)
            except json.JSONDecodeError:
                problems.append(f"{where}: documented JSON, got {body[:300]!r}")
                continue
            problems += [f"{where}: {p}" for p in mismatches(call.expected, answer)]
    assert not problems, "\n".join(problems)
