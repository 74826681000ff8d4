"""An Avro schema as the JSON Schema of the events ingest accepts for it (for /openapi.json).

It follows ``schemas.validation``, not Avro's own JSON encoding: timestamps may be epoch numbers
or ISO-8601 strings, bytes are base64, decimals numbers or strings, unions plain values. It is
documentation: validation itself stays in ``schemas.validation``, which reports every problem.
"""

from __future__ import annotations

from typing import Any

PRIMITIVES: dict[str, dict[str, Any]] = {
    "null": {"type": "null"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "long": {"type": "integer"},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "string": {"type": "string"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
}
TIMESTAMP = {"anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]}
LOGICAL: dict[str, dict[str, Any]] = {
    "timestamp-millis": TIMESTAMP,
    "timestamp-micros": TIMESTAMP,
    "local-timestamp-millis": TIMESTAMP,
    "local-timestamp-micros": TIMESTAMP,
    "date": {"anyOf": [{"type": "integer"}, {"type": "string", "format": "date"}]},
    "uuid": {"type": "string", "format": "uuid"},
    "decimal": {"anyOf": [{"type": "number"}, {"type": "string"}]},
}


def avro_to_json_schema(schema: Any) -> dict[str, Any]:
    """The JSON Schema of one event of ``schema`` (a record); named types are inlined."""
    return _convert(schema, {})


def _convert(schema: Any, named: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return dict(PRIMITIVES[schema])
        if schema not in named:
            return {}
        referred = named[schema]
        if referred["type"] in ("record", "error"):
            # Named again, possibly inside itself: say "an object" rather than recurse.
            return {"type": "object"}
        return _convert(referred, named)
    if isinstance(schema, list):
        return {"anyOf": [_convert(branch, named) for branch in schema]}
    logical = schema.get("logicalType")
    if logical in LOGICAL:
        return dict(LOGICAL[logical])
    kind = schema["type"]
    if kind in ("record", "error", "enum", "fixed"):
        named[schema["name"]] = {**schema, "type": kind}
    if kind in ("record", "error"):
        return _record(schema, named)
    if kind == "enum":
        return {"enum": list(schema["symbols"])}
    if kind == "array":
        return {"type": "array", "items": _convert(schema["items"], named)}
    if kind == "map":
        return {"type": "object", "additionalProperties": _convert(schema["values"], named)}
    if kind == "fixed":
        return {"type": "string", "contentEncoding": "base64"}
    return _convert(kind, named)


def _record(schema: dict[str, Any], named: dict[str, Any]) -> dict[str, Any]:
    properties = {}
    for field in schema["fields"]:
        converted = _convert(field["type"], named)
        if field.get("doc"):
            converted["description"] = field["doc"]
        properties[field["name"]] = converted
    required = [f["name"] for f in schema["fields"] if "default" not in f]
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        out["required"] = required
    if schema.get("doc"):
        out["description"] = schema["doc"]
    return out
