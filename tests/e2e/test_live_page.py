"""The live page (``/live/``) in a real browser: Debian's Chromium, headless, driven by
puppeteer-core (tests/js/live_page_check.mjs; both installed by ``make test``).

A person signs in with an API key, follows a group, sees a posted event arrive, loses the
connection while more arrive, and gets exactly the missed updates when the page reconnects.
The group's name is hostile HTML: the page must show it as text, never run it.
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WINDOW_SECONDS, Pipeline

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).parents[1] / "js" / "live_page_check.mjs"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(
            "Chromium is missing; `make test` installs it (tests/helpers/install-chromium), "
            "or: apt-get install chromium"
        )
    return found


class Browser:
    """The node script behind a pipe: one command, one answer, each within a deadline."""

    def __init__(self, config: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["node", str(SCRIPT), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def do(self, command: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"do": command, **fields}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"no answer to {command!r} within {timeout} s: {stderr[-2000:]}")
        answer: dict[str, Any] = json.loads(line)
        assert answer["ok"], answer
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def page_views(page: str, count: int, ts: int) -> list[dict[str, Any]]:
    return [{"user_id": f"u{i}", "page": page, "load_ms": 1.0, "ts": ts} for i in range(count)]


def test_the_live_page_follows_a_group_and_resumes_after_a_lost_connection(
    pipeline: Pipeline,
) -> None:
    group = f'<img src=x onerror="window.__injected=true">{uuid.uuid4().hex[:6]}'
    key = pipeline.headers["Authorization"].removeprefix("Bearer ")
    browser = Browser(
        {
            "chromium": chromium(),
            "base": pipeline.base_url,
            "key": key,
            "stream": "pageviews",
            "group": group,
        }
    )
    # One window that stays open for the whole test (the clock closes it much later).
    now = time.time_ns() // 1_000_000
    window_ms = WINDOW_SECONDS * 1000
    ts = now - now % window_ms + window_ms
    try:
        browser.do("open")
        with pipeline.client() as client:
            client.post("/v1/streams/pageviews/events", json=page_views(group, 3, ts))
            first = browser.do("count", at_least=3)
            assert first["row"] == {"count": 3, "group": group}  # shown as text
            assert first["injected"] is False  # ...and never run
            dropped = browser.do("drop")
            assert dropped["last_id"]
            client.post("/v1/streams/pageviews/events", json=page_views(group, 4, ts))
            browser.do("follow")
            assert browser.do("count", at_least=7)["row"]["count"] == 7
        seen = browser.do("quit")
    finally:
        browser.close()
    assert seen["problems"] == []
    events = seen["seen"]
    # One snapshot and ready, at the start: the reconnect resumed from the last id instead.
    assert [e["type"] for e in events].count("ready") == 1
    metrics = [e for e in events if e["type"] == "metric"]
    order = [tuple(int(part) for part in e["id"].split("-")) for e in metrics]
    assert order == sorted(set(order)), "an update was delivered twice or out of order"
    counts = [json.loads(e["data"])["count"] for e in metrics]
    assert counts[-1] == 7 and counts == sorted(counts)
