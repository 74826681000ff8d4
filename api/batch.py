"""Turn a request body into validated, encoded Kafka records: pure functions, no I/O.

The batch rule (documented in README and OpenAPI): by default each event stands alone; valid
events are produced, invalid ones are reported by index *and* recorded in ``dlq.{stream}``
(stage ``ingest``). With ``?atomic=true`` one invalid event rejects the whole request and
nothing is produced.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from schemas.catalog import EVENT_ID_FIELD, StreamSpec
from schemas.validation import FieldError, validate_event

MAX_EVENT_ID_LENGTH = 128


class BodyError(ValueError):
    """The body as a whole is unreadable; ``where`` locates the problem (line/column)."""

    def __init__(self, message: str, where: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.where = where or {}


def parse_events(body: bytes, content_type: str) -> list[Any]:
    """One JSON object, a JSON array of objects, or NDJSON (one object per line)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not UTF-8: byte {exc.start} is invalid") from None
    if "ndjson" in content_type or "jsonlines" in content_type:
        events = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BodyError(
                    f"line {number} is not JSON: {exc.msg}", {"line": number, "column": exc.colno}
                ) from None
        return events
    if not text.strip():
        raise BodyError("body is empty; send a JSON object, a JSON array or NDJSON")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BodyError(
            f"body is not JSON: {exc.msg}", {"line": exc.lineno, "column": exc.colno}
        ) from None
    return parsed if isinstance(parsed, list) else [parsed]


@dataclass(frozen=True)
class AcceptedEvent:
    index: int
    event_id: str
    key: bytes | None  # None for a null key field: Kafka spreads those over partitions
    datum: dict[str, Any]


@dataclass(frozen=True)
class RejectedEvent:
    index: int
    error: FieldError
    original: bytes
    event_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, **self.error.to_dict()}


@dataclass
class PreparedBatch:
    accepted: list[AcceptedEvent] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)


def _take_event_id(event: dict[str, Any]) -> tuple[str | None, FieldError | None]:
    event_id = event.pop(EVENT_ID_FIELD, None)
    if event_id is None:
        return uuid.uuid4().hex, None
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_LENGTH:
        return None, FieldError(
            f"$.{EVENT_ID_FIELD}",
            f"must be a non-empty string of at most {MAX_EVENT_ID_LENGTH} chars",
        )
    return event_id, None


def prepare_batch(
    spec: StreamSpec, events: list[Any], ingested_at: int, schema: dict[str, Any] | None = None
) -> PreparedBatch:
    """Validate every event (against ``schema``, default the stream's latest); accepted ones
    get their id, ingest time and partition key."""
    schema = schema or spec.schema
    batch = PreparedBatch()
    for index, event in enumerate(events):
        original = json.dumps(event, separators=(",", ":")).encode()
        if not isinstance(event, dict):
            batch.rejected.append(
                RejectedEvent(
                    index,
                    FieldError("$", f"an event must be a JSON object, got {type(event).__name__}"),
                    original,
                    None,
                )
            )
            continue
        event = dict(event)
        event_id, error = _take_event_id(event)
        if error is None:
            datum, error = validate_event(schema, event)
        if error is not None or event_id is None:
            assert error is not None
            batch.rejected.append(
                RejectedEvent(
                    index, error, original, event_id if isinstance(event_id, str) else None
                )
            )
            continue
        assert datum is not None
        datum[EVENT_ID_FIELD] = event_id
        datum["ingested_at"] = ingested_at
        key_value = datum.get(spec.key_field)
        key = None if key_value is None else str(key_value).encode()
        batch.accepted.append(AcceptedEvent(index, event_id, key, datum))
    return batch
