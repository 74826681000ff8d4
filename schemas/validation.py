"""Validate a JSON event against an Avro schema and coerce it to what the Avro writer expects.

fastavro's own validator answers yes/no with terse messages; producers need to know *which*
field failed and why, so this walks the schema itself and reports every problem of an event, each
at its JSON Pointer (``/items/2/qty``), up to :data:`MAX_PROBLEMS`.
JSON conveniences are accepted where they are unambiguous: ISO-8601 strings for timestamps, and
integers for float/double fields. Unknown fields are rejected: a typo must not vanish silently.
"""

from __future__ import annotations

import base64
import math
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from riverbed.core.errors import FieldProblem, join_pointer

INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
EPOCH_DATE = date(1970, 1, 1)
#: Problems reported for one event at most: an event with thousands of bad fields gets a
#: bounded answer (the last entry says how many more there were).
MAX_PROBLEMS = 50


class _Invalid(Exception):
    """One problem at one position; raised where a value cannot be checked any further."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.error = FieldProblem(path, message)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _parse_timestamp(value: Any, path: str, scale: int) -> int:
    """Epoch milli/micro-seconds from an integer or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, bool):
        raise _Invalid(path, "expected a timestamp (epoch integer or ISO-8601 string), got boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Invalid(path, f"{value!r} is not an ISO-8601 timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return micros // (1_000_000 // scale) if scale != 1_000_000 else micros
    raise _Invalid(
        path, f"expected a timestamp (epoch integer or ISO-8601 string), got {_type_name(value)}"
    )


# ClickHouse DateTime64 holds 1900-01-01 .. 2299-12-31; a timestamp outside it could be accepted
# into Kafka but never stored, so it is refused at the door.
TIME_RANGE_SECONDS = (-2_208_988_800, 10_413_791_999)


def _in_time_range(ticks: int, per_second: int, path: str) -> int:
    low, high = TIME_RANGE_SECONDS
    if not low * per_second <= ticks <= high * per_second + per_second - 1:
        raise _Invalid(path, f"timestamp {ticks} is outside 1900-01-01..2299-12-31")
    return ticks


class _Validator:
    """Walks one schema; named types are remembered so references by name resolve."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.named: dict[str, Any] = {}
        self.root = schema
        self.problems: list[FieldProblem] = []

    def collect(self, schema: Any, value: Any, path: str, namespace: str | None) -> Any:
        """Check one position; a problem there is recorded and its siblings still checked."""
        try:
            return self.check(schema, value, path, namespace)
        except _Invalid as exc:
            self.problems.append(exc.error)
            return None

    def attempt(self, schema: Any, value: Any, path: str, ns: str | None) -> tuple[Any, bool]:
        """Check a union branch on its own: ``(value, True)`` only if it raised no problem."""
        outer, self.problems = self.problems, []
        try:
            value = self.collect(schema, value, path, ns)
            return value, not self.problems
        finally:
            self.problems = outer

    def _remember(self, schema: dict[str, Any], namespace: str | None) -> None:
        name = schema.get("name")
        if name:
            ns = schema.get("namespace", namespace)
            self.named[name] = schema
            if ns and "." not in name:
                self.named[f"{ns}.{name}"] = schema

    def check(self, schema: Any, value: Any, path: str, namespace: str | None = None) -> Any:
        if isinstance(schema, str):
            if schema in self.named:
                return self.check(self.named[schema], value, path, namespace)
            return self._primitive(schema, value, path)
        if isinstance(schema, list):
            return self._union(schema, value, path, namespace)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical:
            return self._logical(schema, logical, value, path)
        if kind == "record":
            self._remember(schema, namespace)
            return self._record(schema, value, path, schema.get("namespace", namespace))
        if kind == "enum":
            self._remember(schema, namespace)
            if value not in schema["symbols"]:
                raise _Invalid(path, f"{value!r} is not one of {schema['symbols']}")
            return value
        if kind == "array":
            if not isinstance(value, list):
                raise _Invalid(path, f"expected array, got {_type_name(value)}")
            return [
                self.collect(schema["items"], v, join_pointer(path, i), namespace)
                for i, v in enumerate(value)
            ]
        if kind == "map":
            if not isinstance(value, dict):
                raise _Invalid(path, f"expected object (Avro map), got {_type_name(value)}")
            return {
                k: self.collect(schema["values"], v, join_pointer(path, k), namespace)
                for k, v in value.items()
            }
        if kind == "fixed":
            self._remember(schema, namespace)
            raw = self._bytes(value, path)
            if len(raw) != schema["size"]:
                raise _Invalid(path, f"expected {schema['size']} bytes, got {len(raw)}")
            return raw
        return self.check(kind, value, path, namespace)

    def _record(self, schema: dict[str, Any], value: Any, path: str, ns: str | None) -> dict:
        if not isinstance(value, dict):
            raise _Invalid(path, f"expected object, got {_type_name(value)}")
        known = {f["name"] for f in schema["fields"]}
        for name in value:
            if name not in known:
                self.problems.append(
                    FieldProblem(
                        join_pointer(path, name), f"unknown field (the schema has {sorted(known)})"
                    )
                )
        out: dict[str, Any] = {}
        for f in schema["fields"]:
            name = f["name"]
            if name in value:
                out[name] = self.collect(f["type"], value[name], join_pointer(path, name), ns)
            elif "default" in f:
                out[name] = f["default"]
            else:
                self.problems.append(
                    FieldProblem(join_pointer(path, name), "required field is missing")
                )
        return out

    def _union(self, branches: list[Any], value: Any, path: str, ns: str | None) -> Any:
        if value is None and "null" in branches:
            return None
        for branch in branches:
            if branch == "null":
                continue
            checked, ok = self.attempt(branch, value, path, ns)
            if ok:
                return checked
        allowed = ", ".join(_describe(b) for b in branches)
        raise _Invalid(path, f"{_type_name(value)} {value!r:.40} matches none of [{allowed}]")

    def _primitive(self, kind: str, value: Any, path: str) -> Any:
        if kind == "null":
            if value is not None:
                raise _Invalid(path, f"expected null, got {_type_name(value)}")
            return None
        if kind == "boolean":
            if not isinstance(value, bool):
                raise _Invalid(path, f"expected boolean, got {_type_name(value)}")
            return value
        if kind in ("int", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise _Invalid(path, f"expected {kind} (integer), got {_type_name(value)}")
            low, high = INT_RANGE if kind == "int" else LONG_RANGE
            if not low <= value <= high:
                raise _Invalid(path, f"{value} is out of range for Avro {kind}")
            return value
        if kind in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Invalid(path, f"expected {kind} (number), got {_type_name(value)}")
            try:
                number = float(value)
            except OverflowError:
                raise _Invalid(
                    path, f"{kind} cannot hold an integer of {len(str(value))} digits"
                ) from None
            if not math.isfinite(number):
                raise _Invalid(path, f"{value} is not a finite number")
            return number
        if kind == "string":
            if not isinstance(value, str):
                raise _Invalid(path, f"expected string, got {_type_name(value)}")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _Invalid(
                    path, "string holds a lone UTF-16 surrogate, which is not valid Unicode"
                ) from None
            return value
        if kind == "bytes":
            return self._bytes(value, path)
        raise _Invalid(path, f"schema names unknown type {kind!r}")

    @staticmethod
    def _bytes(value: Any, path: str) -> bytes:
        if not isinstance(value, str):
            raise _Invalid(path, f"expected base64 string (Avro bytes), got {_type_name(value)}")
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise _Invalid(path, "expected base64 string (Avro bytes)") from None

    def _logical(self, schema: dict[str, Any], logical: str, value: Any, path: str) -> Any:
        if logical in ("timestamp-millis", "local-timestamp-millis"):
            return _in_time_range(_parse_timestamp(value, path, 1000), 1000, path)
        if logical in ("timestamp-micros", "local-timestamp-micros"):
            return _in_time_range(_parse_timestamp(value, path, 1_000_000), 1_000_000, path)
        if logical == "date":
            if isinstance(value, str):
                try:
                    return (date.fromisoformat(value) - EPOCH_DATE).days
                except ValueError:
                    raise _Invalid(path, f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
            return self._primitive("int", value, path)
        if logical == "uuid":
            text = self._primitive("string", value, path)
            try:
                return str(uuid.UUID(text))
            except ValueError:
                raise _Invalid(path, f"{text!r} is not a UUID") from None
        if logical == "decimal":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise _Invalid(
                    path, f"expected decimal (number or string), got {_type_name(value)}"
                )
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                raise _Invalid(path, f"{value!r} is not a decimal number") from None
            if not number.is_finite():
                raise _Invalid(path, f"{value!r} is not a finite decimal number")
            scale, precision = schema.get("scale", 0), schema["precision"]
            exponent = number.as_tuple().exponent
            if isinstance(exponent, int) and exponent < -scale:
                raise _Invalid(path, f"{value} has more than {scale} decimal places")
            integer_digits = max(0, number.adjusted() + 1)
            if integer_digits > precision - scale:
                raise _Invalid(
                    path,
                    f"{value} has more than {precision - scale} digits before "
                    f"the point (decimal({precision}, {scale}))",
                )
            return number
        # Unknown logical types fall back to the underlying type, as the Avro spec requires.
        return self.check(schema["type"], value, path)


def _describe(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("logicalType") or schema.get("name") or schema["type"])
    return str(schema)


def validate_event(
    schema: dict[str, Any], event: Any
) -> tuple[dict[str, Any] | None, list[FieldProblem]]:
    """``(datum, [])`` with a datum ready for the Avro writer, or ``(None, problems)`` naming
    every problem found (at most :data:`MAX_PROBLEMS`), each at its JSON Pointer."""
    validator = _Validator(schema)
    datum = validator.collect(schema, event, "", None)
    problems = validator.problems
    if not problems:
        return datum, []
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS + 1
        problems = [*problems[: MAX_PROBLEMS - 1], FieldProblem("", f"and {more} more problems")]
    return None, problems
