"""Query parameters and cursors shared by the read endpoints, with problem+json on bad input."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

from starlette.requests import Request

from api.problems import Problem

EPOCH_MS = re.compile(r"^-?\d{1,15}$")


def time_param(request: Request, name: str) -> int | None:
    """Epoch milliseconds or ISO-8601 -> epoch milliseconds."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if EPOCH_MS.match(raw):
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(
            400,
            "Bad parameter",
            f"{name}={raw!r} is neither epoch milliseconds nor ISO-8601",
            parameter=name,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise Problem(
            400, "Bad parameter", f"{name} must be an integer in [{low}, {high}]", parameter=name
        )
    return int(raw)


def encode_cursor(event_time_ms: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([event_time_ms, event_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        event_time, event_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return int(event_time), str(event_id)
    except (ValueError, TypeError, OverflowError):
        raise Problem(
            400, "Bad parameter", "cursor is not one this API returned", parameter="cursor"
        ) from None
