"""A server-sent events reader for tests: parses ``event:``, ``id:``, ``data:`` and ``retry:``
lines into messages, as EventSource does."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Message:
    event: str
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def messages(response: httpx.Response) -> Iterator[Message]:
    """The messages of an open SSE response, as they arrive (comments skipped)."""
    event, data, entry_id, retry = "message", [], None, None
    for line in response.iter_lines():
        if not line:
            if data:
                yield Message(event, "\n".join(data), entry_id, retry)
            event, data, entry_id, retry = "message", [], None, None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            entry_id = value
        elif name == "retry":
            retry = int(value)


def read_until(
    stream: Iterator[Message], done: Callable[[list[Message]], bool], deadline: float
) -> list[Message]:
    """Messages until ``done(the messages so far)`` or the (monotonic) deadline passes."""
    got: list[Message] = []
    for message in stream:
        got.append(message)
        if done(got) or time.monotonic() > deadline:
            break
    return got
