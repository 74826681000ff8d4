"""Turn a request body into validated, encoded Kafka records: pure functions, no I/O.

The batch rule (documented in README and OpenAPI): by default each event stands alone; valid
events are produced, invalid ones are reported by index *and* recorded in ``dlq.{stream}``
(stage ``ingest``). With ``?atomic=true`` one invalid event rejects the whole request and
nothing is produced.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from riverbed.core.errors import FieldProblem, RiverbedError, pointer
from schemas.catalog import EVENT_ID_FIELD, StreamSpec
from schemas.validation import validate_event

MAX_EVENT_ID_LENGTH = 128


class EventTooLarge(RiverbedError):
    """One event is bigger than a Kafka message may be; nothing of the request is taken."""

    status, title = 413, "Event too large"

    def __init__(self, index: int, size: int, limit: int) -> None:
        super().__init__(
            f"event {index} is {size} bytes as JSON; one event may be at most {limit} bytes"
        )
        self.index, self.size, self.limit = index, size, limit

    def extra(self) -> dict[str, Any]:
        return {"index": self.index, "size": self.size, "limit": self.limit}


class BodyError(RiverbedError):
    """The body as a whole is unreadable; ``where`` locates the problem (line/column)."""

    status, title = 400, "Malformed body"

    def __init__(self, message: str, where: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.where = where or {}

    def extra(self) -> dict[str, Any]:
        return dict(self.where)


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
            except (RecursionError, ValueError) as exc:
                raise BodyError(f"line {number}: {_unparsable(exc)}", {"line": number}) from None
        return events
    if not text.strip():
        raise BodyError("body is empty; send a JSON object, a JSON array or NDJSON")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data" and exc.lineno > 1:
            hint = "; for one event per line, send Content-Type: application/x-ndjson"
        raise BodyError(
            f"body is not JSON: {exc.msg}{hint}", {"line": exc.lineno, "column": exc.colno}
        ) from None
    except (RecursionError, ValueError) as exc:
        raise BodyError(f"body {_unparsable(exc)}") from None
    return parsed if isinstance(parsed, list) else [parsed]


def _unparsable(exc: Exception) -> str:
    """Why valid-looking JSON was refused: nesting past the parser's depth, or an integer of
    more digits than Python converts (both would otherwise be a 500)."""
    if isinstance(exc, RecursionError):
        return "is nested too deeply to parse"
    return f"holds a number that cannot be read: {exc}"


@dataclass(frozen=True)
class AcceptedEvent:
    index: int
    event_id: str
    key: bytes | None  # None for a null key field: Kafka spreads those over partitions
    datum: dict[str, Any]
    # Why a later stage is expected to set it aside (stored, but quarantined), if it is.
    quarantine: str | None = None


@dataclass(frozen=True)
class LateCheck:
    """Tells, at the edge, an event whose metrics window has already closed.

    Such an event is stored like any other, but the windowed metrics will not count it: they
    dead-letter it as late (stage ``aggregate``). The flow's watermark is its own, so this is
    the wall clock's reading (the window's end plus the allowed lateness is past): the answer
    calls the event ``quarantined`` and says why, rather than ``accepted`` with no warning.
    """

    window_ms: int  # the default tumbling window; a stream may declare its own
    lateness_ms: int

    def reason(self, spec: StreamSpec, datum: dict[str, Any], now_ms: int) -> str | None:
        event_time = datum.get(spec.time_field) if spec.time_field else None
        if not isinstance(event_time, int):
            return None
        window_ms = spec.window_seconds * 1000 if spec.window_seconds else self.window_ms
        closes = (event_time // window_ms + 1) * window_ms + self.lateness_ms
        if closes > now_ms:
            return None
        return (
            f"late: {spec.time_field} is {(now_ms - event_time) / 1000:.0f} s old and its "
            f"{window_ms / 1000:.0f} s metrics window closed "
            f"{(now_ms - closes) / 1000:.0f} s ago; the event is stored but not counted in "
            "the metrics, and a dead letter (stage aggregate) under its event_id says so"
        )


@dataclass(frozen=True)
class RejectedEvent:
    index: int
    problems: list[FieldProblem]  # every problem found in the event, at least one
    original: bytes
    event_id: str | None

    def to_dicts(self) -> list[dict[str, Any]]:
        """One ``{index, event_id, path, message}`` per problem."""
        return [
            {"index": self.index, "event_id": self.event_id, **problem.to_dict()}
            for problem in self.problems
        ]

    def summary(self) -> str:
        """Every problem in one line, as a dead letter's error."""
        return "; ".join(f"{p.path or '/'}: {p.message}" for p in self.problems)


@dataclass(frozen=True)
class DuplicateEvent:
    """A later copy of an ``event_id``: of an event earlier in the same request
    (``first_index``), or of one an earlier request brought (``first_index`` None)."""

    index: int
    event_id: str
    first_index: int | None

    def to_dict(self) -> dict[str, Any]:
        first: dict[str, Any] = (
            {"first_index": self.first_index}
            if self.first_index is not None
            else {"earlier_request": True}
        )
        return {"index": self.index, "event_id": self.event_id, **first}


@dataclass
class PreparedBatch:
    accepted: list[AcceptedEvent] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)
    duplicates: list[DuplicateEvent] = field(default_factory=list)


def _take_event_id(event: dict[str, Any]) -> tuple[str | None, list[FieldProblem]]:
    event_id = event.pop(EVENT_ID_FIELD, None)
    if event_id is None:
        return uuid.uuid4().hex, []
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_LENGTH:
        return None, [
            FieldProblem(
                pointer(EVENT_ID_FIELD),
                f"must be a non-empty string of at most {MAX_EVENT_ID_LENGTH} chars",
            )
        ]
    return event_id, []


def prepare_batch(
    spec: StreamSpec,
    events: list[Any],
    ingested_at: int,
    schema: dict[str, Any] | None = None,
    max_event_bytes: int | None = None,
    max_future_ms: int | None = None,
    late: LateCheck | None = None,
) -> PreparedBatch:
    """Validate every event (against ``schema``, default the stream's latest); accepted ones
    get their id, ingest time and partition key.

    A second copy of an ``event_id`` in the same request is reported as a duplicate of the
    first and not produced. With ``late``, an event whose metrics window has closed carries
    the reason it will be quarantined. An event stamped more than ``max_future_ms`` ahead of now is
    rejected here, before the 202, rather than dead-lettered later by the agents. Raises
    :class:`EventTooLarge` for an event over ``max_event_bytes`` as JSON: neither it nor its
    dead letter would fit a Kafka message.
    """
    schema = schema or spec.schema
    batch = PreparedBatch()
    first_index: dict[str, int] = {}
    for index, event in enumerate(events):
        outcome = _prepare_one(
            spec, schema, index, event, ingested_at, max_event_bytes, max_future_ms
        )
        if isinstance(outcome, RejectedEvent):
            batch.rejected.append(outcome)
            continue
        if late is not None and (reason := late.reason(spec, outcome.datum, ingested_at)):
            outcome = dataclasses.replace(outcome, quarantine=reason)
        first = first_index.setdefault(outcome.event_id, index)
        if first != index:
            batch.duplicates.append(DuplicateEvent(index, outcome.event_id, first))
            continue
        batch.accepted.append(outcome)
    return batch


def _prepare_one(
    spec: StreamSpec,
    schema: dict[str, Any],
    index: int,
    event: Any,
    ingested_at: int,
    max_event_bytes: int | None,
    max_future_ms: int | None,
) -> AcceptedEvent | RejectedEvent:
    original = json.dumps(event, separators=(",", ":")).encode()
    if max_event_bytes is not None and len(original) > max_event_bytes:
        raise EventTooLarge(index, len(original), max_event_bytes)
    if not isinstance(event, dict):
        kind = type(event).__name__
        problem = FieldProblem("", f"an event must be a JSON object, got {kind}")
        return RejectedEvent(index, [problem], original, None)
    event = dict(event)
    event_id, problems = _take_event_id(event)
    datum, invalid = validate_event(schema, event)
    problems += invalid
    if datum is not None and max_future_ms is not None:
        problems += _future_problems(spec, datum, ingested_at, max_future_ms)
    if problems or event_id is None or datum is None:
        return RejectedEvent(index, problems, original, event_id)
    datum[EVENT_ID_FIELD] = event_id
    datum["ingested_at"] = ingested_at
    key_value = datum.get(spec.key_field)
    key = None if key_value is None else str(key_value).encode()
    return AcceptedEvent(index, event_id, key, datum)


def _future_problems(
    spec: StreamSpec, datum: dict[str, Any], now_ms: int, max_future_ms: int
) -> list[FieldProblem]:
    """An event time too far ahead would hold its windows open and distort live values."""
    event_time = datum.get(spec.time_field) if spec.time_field else None
    if not isinstance(event_time, int) or event_time <= now_ms + max_future_ms:
        return []
    ahead = (event_time - now_ms) / 1000
    return [
        FieldProblem(
            pointer(spec.time_field or ""),
            f"is {ahead:.0f} s in the future; at most {max_future_ms / 1000:.0f} s of clock "
            "skew is allowed",
        )
    ]
