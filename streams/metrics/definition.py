"""A metric declaration, checked against its stream's schema before anything runs.

Users write these in YAML (``metrics.yaml`` in the data dir) or post them as JSON to
``/v1/metrics``; both go through :func:`parse_definition`, so the two paths accept and refuse
exactly the same things, with the same field paths in the errors. Example::

    name: revenue_by_product
    stream: purchases
    aggregations: [count, sum(amount), p99(amount), count_distinct(user_id)]
    group_by: [product]
    filter: "amount > 0 and country in ('DE', 'FR')"
    window: {type: hopping, size: 60s, step: 10s}
    time: event            # or processing (the agents' processed_at)
    allowed_lateness: 5s
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from riverbed.core.errors import FieldProblem, Invalid, join_pointer
from schemas.catalog import NUMERIC_TYPES, StreamSpec, base_type
from schemas.expressions import Expression, ExpressionError
from streams.metrics.aggregations import Aggregator, aggregator

MAX_DURATION_MS = 366 * 86_400_000
MAX_WINDOW_MS = 31 * 86_400_000  # windows longer than a month belong in a ClickHouse query
MAX_HOPS = 100  # windows one event of a hopping metric lands in (size / step)
METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
AGGREGATION = re.compile(r"^\s*([a-z_]+[0-9.]*)\s*(?:\(\s*([A-Za-z_][A-Za-z0-9_]*)?\s*\))?\s*$")
PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
NUMERIC_OPS = frozenset({"sum", "avg", "min", "max"})


def parse_duration_ms(value: Any) -> int:
    """``30`` (seconds), ``"30s"``, ``"5m"``, ``"250ms"`` -> milliseconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 250ms")
    try:
        if isinstance(value, int | float):
            ms = float(value) * 1000
        elif isinstance(value, str) and (match := DURATION.match(value)):
            ms = float(match.group(1)) * UNITS_MS[match.group(2) or "s"]
        else:
            raise ValueError("expected a duration such as 30s, 5m or 250ms")
    except OverflowError:
        ms = math.inf
    if not math.isfinite(ms) or ms > MAX_DURATION_MS:
        raise ValueError("a duration is at most 366d")
    if ms != int(ms) or ms < 0:
        raise ValueError("a duration is a whole, non-negative number of milliseconds")
    return int(ms)


DurationMs = Annotated[int, BeforeValidator(parse_duration_ms)]


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["tumbling", "hopping", "session"]
    size: DurationMs | None = Field(None, description="tumbling and hopping: window length")
    step: DurationMs | None = Field(None, description="hopping: distance between starts")
    gap: DurationMs | None = Field(None, description="session: inactivity that ends a session")

    @model_validator(mode="after")
    def _shape(self) -> Window:
        need = {"tumbling": {"size"}, "hopping": {"size", "step"}, "session": {"gap"}}[self.type]
        given = {k for k in ("size", "step", "gap") if getattr(self, k) is not None}
        if need - given:
            raise ValueError(f"a {self.type} window needs {sorted(need - given)}")
        if given - need:
            raise ValueError(f"a {self.type} window takes only {sorted(need)}")
        for key in given:
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive")
            if getattr(self, key) > MAX_WINDOW_MS:
                raise ValueError(f"{key} must be at most 31d")
        if self.type == "hopping":
            assert self.size is not None and self.step is not None
            if self.step > self.size:
                raise ValueError("a hopping window's step must not exceed its size")
            if self.size % self.step:
                raise ValueError("a hopping window's size must be a multiple of its step")
            if self.size // self.step > MAX_HOPS:
                raise ValueError(
                    f"size / step is {self.size // self.step}: every event would update that"
                    f" many windows (at most {MAX_HOPS}); use a larger step"
                )
        return self


class MetricDefinition(BaseModel):
    """What the user declared; :func:`parse_definition` checks it against the stream."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=METRIC_NAME.pattern)
    stream: str
    aggregations: list[str | dict[str, str]] = Field(min_length=1)
    group_by: list[str] = Field(default_factory=list, max_length=8)
    filter: str | None = None
    window: Window
    time: Literal["event", "processing"] = "event"
    allowed_lateness: DurationMs | None = None
    description: str | None = None


@dataclass(frozen=True)
class Aggregation:
    """One output value of a metric: ``op`` over ``field`` (None for ``count``)."""

    op: str
    field: str | None
    name: str
    quantile: float | None = None


class MetricError(Invalid):
    """A declaration that cannot run; ``problems`` name every flaw at its JSON Pointer."""

    title = "Invalid metric"


@dataclass(frozen=True)
class Metric:
    """A checked, runnable metric; pure data so it pickles into the flow's snapshots."""

    definition: dict[str, Any]
    aggregations: tuple[Aggregation, ...]
    lateness_ms: int
    fields: tuple[str, ...] = ()  # of the stream's clean schema, which the filter may read

    # Cached: the flow asks these for every event, and a frozen dataclass still lets
    # cached_property store its value (it writes the instance dict directly).
    @cached_property
    def name(self) -> str:
        return str(self.definition["name"])

    @cached_property
    def stream(self) -> str:
        return str(self.definition["stream"])

    @cached_property
    def group_by(self) -> tuple[str, ...]:
        return tuple(self.definition.get("group_by") or ())

    def window_ms(self, key: str) -> int:
        """``size``, ``step`` or ``gap`` of the window in ms (0 when the type has none)."""
        return self._window_ms.get(key, 0)

    @cached_property
    def _window_ms(self) -> dict[str, int]:
        window = self.definition["window"]
        return {k: parse_duration_ms(window[k]) for k in ("size", "step", "gap") if k in window}

    @cached_property
    def window_type(self) -> str:
        return str(self.definition["window"]["type"])

    @cached_property
    def time_basis(self) -> str:
        return str(self.definition.get("time", "event"))

    @cached_property
    def aggregators(self) -> tuple[Aggregator, ...]:
        """How each aggregation is computed, in order (see ``streams.metrics.aggregations``)."""
        return tuple(aggregator(a.op, a.quantile) for a in self.aggregations)

    @cached_property
    def plan(self) -> tuple[tuple[str | None, str, Aggregator], ...]:
        """Per aggregation: which inputs it reads ("numbers", "hashes", or None for the event
        itself), the field, and its aggregator: decided once, not per event."""
        return tuple(
            (
                None if a.field is None else "hashes" if a.op == "count_distinct" else "numbers",
                a.field or "",
                agg,
            )
            for a, agg in zip(self.aggregations, self.aggregators, strict=True)
        )

    @cached_property
    def distinct_fields(self) -> tuple[str, ...]:
        return tuple(
            {a.field: None for a in self.aggregations if a.op == "count_distinct" and a.field}
        )

    @cached_property
    def numeric_inputs(self) -> tuple[str, ...]:
        return tuple(
            {a.field: None for a in self.aggregations if a.op != "count_distinct" and a.field}
        )

    @cached_property
    def generation(self) -> str:
        """Fingerprint of the declaration: a changed metric starts from empty windows."""
        canonical = json.dumps(self.definition, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(canonical.encode(), digest_size=6).hexdigest()

    def compile_filter(self) -> Expression | None:
        text = self.definition.get("filter")
        return None if not text else Expression(text, self.fields)


def parse_aggregation(spec: str | dict[str, str]) -> Aggregation:
    """``"count"``, ``"sum(amount)"``, ``"p99(amount)"`` or ``{op: p99, field: amount, as: x}``."""
    if isinstance(spec, dict):
        op, field, alias = spec.get("op", ""), spec.get("field"), spec.get("as")
    else:
        match = AGGREGATION.match(spec)
        if not match:
            raise ValueError(f"{spec!r} is not an aggregation like count, sum(field), p99(field)")
        op, field, alias = match.group(1), match.group(2), None
    quantile = None
    if percentile := PERCENTILE.match(op):
        quantile = float(percentile.group(1)) / 100
        if not 0 < quantile < 1:
            raise ValueError(f"{op}: a percentile is between p0 and p100, exclusive")
    elif op not in NUMERIC_OPS | {"count", "count_distinct"}:
        raise ValueError(
            f"unknown aggregation {op!r}: count, count_distinct, sum, avg, min, max, p50, p90, p99"
        )
    if op == "count" and field is not None:
        raise ValueError("count takes no field (it counts events); use count_distinct(field)")
    if op != "count" and field is None:
        raise ValueError(f"{op} needs a field, e.g. {op}(amount)")
    name = alias or (op if field is None else f"{op}_{field}")
    return Aggregation(op, field, name, quantile)


def _field_types(spec: StreamSpec) -> dict[str, Any]:
    return {f["name"]: base_type(f["type"]) for f in spec.clean_schema["fields"]}


def _normalized(declared: MetricDefinition) -> dict[str, Any]:
    """The declaration as stored and shown: durations spelled in ms, so that parsing the stored
    form again gives the same metric (a bare number would read as seconds)."""
    definition = declared.model_dump(exclude_none=True)
    window = definition["window"]
    for key in ("size", "step", "gap"):
        if key in window:
            window[key] = f"{window[key]}ms"
    if "allowed_lateness" in definition:
        definition["allowed_lateness"] = f"{definition['allowed_lateness']}ms"
    return definition


def parse_definition(
    raw: Any, streams: dict[str, StreamSpec], default_lateness_ms: int, where: str = ""
) -> Metric:
    """Check a declaration; raise :class:`MetricError` listing every problem at its pointer
    (under ``where``, the pointer of the declaration in a larger document)."""
    try:
        declared = MetricDefinition.model_validate(raw)
    except ValidationError as exc:
        raise MetricError(
            [FieldProblem(join_pointer(where, *e["loc"]), e["msg"]) for e in exc.errors()]
        ) from None
    errors: list[FieldProblem] = []
    spec = streams.get(declared.stream)
    if spec is None:
        known = ", ".join(sorted(streams)) or "none"
        raise MetricError.at(
            join_pointer(where, "stream"), f"no stream {declared.stream!r} ({known})"
        )
    types = _field_types(spec)
    aggregations: list[Aggregation] = []
    for index, item in enumerate(declared.aggregations):
        path = join_pointer(where, "aggregations", index)
        try:
            agg = parse_aggregation(item)
        except ValueError as exc:
            errors.append(FieldProblem(path, str(exc)))
            continue
        if agg.field is not None and agg.field not in types:
            errors.append(FieldProblem(path, f"{agg.field!r} is not a field of the stream"))
        elif (
            agg.field is not None
            and agg.op != "count_distinct"
            and (types[agg.field] not in NUMERIC_TYPES)
        ):
            errors.append(FieldProblem(path, f"{agg.op} needs a numeric field"))
        if any(a.name == agg.name for a in aggregations):
            errors.append(FieldProblem(path, f"{agg.name!r} is computed twice"))
        aggregations.append(agg)
    for index, name in enumerate(declared.group_by):
        if name not in types:
            path = join_pointer(where, "group_by", index)
            errors.append(FieldProblem(path, f"{name!r} is not a field"))
    if declared.filter:
        try:
            Expression(declared.filter, types)
        except ExpressionError as exc:
            errors.append(FieldProblem(join_pointer(where, "filter"), str(exc)))
    if errors:
        raise MetricError(errors)
    definition = _normalized(declared)
    # Processing time keeps a lateness too: processed_at is stamped by several agents workers
    # and read from several partitions, so it does not arrive in order either.
    lateness = declared.allowed_lateness
    return Metric(
        definition,
        tuple(aggregations),
        default_lateness_ms if lateness is None else lateness,
        tuple(types),
    )
