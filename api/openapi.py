"""The OpenAPI 3.1 document served at ``/openapi.json``, with stream schemas filled in live."""

from __future__ import annotations

from typing import Any

from schemas.catalog import StreamSpec

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM}},
    }


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


STREAM_PARAM = {"name": "stream", "in": "path", "required": True, "schema": {"type": "string"}}


def build_openapi(catalog: dict[str, StreamSpec]) -> dict[str, Any]:
    stream_names = sorted(catalog)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Riverbed",
            "version": "0.1.0",
            "description": "Post events, query them and their windowed metrics, follow live "
            "updates over server-sent events. Errors are RFC 9457 problem+json.",
        },
        "paths": {
            "/v1/streams": {
                "get": {
                    "summary": "List streams with their Avro schemas",
                    "responses": {"200": _json("The catalog")},
                }
            },
            "/v1/streams/{stream}": {
                "get": {
                    "summary": "One stream",
                    "parameters": [STREAM_PARAM],
                    "responses": {"200": _json("The stream"), "404": _problem("Unknown stream")},
                }
            },
            "/v1/streams/{stream}/events": {
                "post": {
                    "summary": "Ingest events",
                    "description": (
                        "Body: one JSON object, a JSON array, or NDJSON "
                        "(Content-Type: application/x-ndjson). Each event is validated against "
                        "the stream's Avro schema. Optional `event_id` (string) makes retries "
                        "safe: duplicates are dropped. Batch rule: valid events are accepted and "
                        "invalid ones reported by index and recorded in dlq.{stream} (207); with "
                        "?atomic=true any invalid event rejects the whole request (400). 202/207 "
                        "are sent only after Kafka acknowledged every accepted event."
                    ),
                    "parameters": [
                        STREAM_PARAM,
                        {"name": "atomic", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": f"#/components/schemas/{n}"} for n in stream_names
                                    ]
                                    + [{"type": "array"}]
                                }
                            },
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "202": _json(
                            "All events accepted", {"$ref": "#/components/schemas/Accepted"}
                        ),
                        "207": _json("Some events accepted; `errors` lists the rejected ones"),
                        "400": _problem("Malformed body or invalid events (`errors`)"),
                        "404": _problem("Unknown stream"),
                        "413": _problem("Body or batch too large"),
                        "503": _problem("Broker unavailable; retry after Retry-After seconds"),
                    },
                },
                "get": {
                    "summary": "Read stored events, newest first",
                    "parameters": [STREAM_PARAM]
                    + [
                        {"name": n, "in": "query", "schema": {"type": "string"}, "description": d}
                        for n, d in (
                            ("from", "epoch ms or ISO-8601, inclusive"),
                            ("to", "epoch ms or ISO-8601, exclusive"),
                            ("limit", "1..1000, default 100"),
                            ("cursor", "next_cursor of the previous page"),
                        )
                    ],
                    "responses": {
                        "200": _json("A page of events"),
                        "400": _problem("Bad parameter"),
                        "404": _problem("Unknown stream"),
                    },
                },
            },
            "/v1/reference/{table}/{key}": {
                "put": {
                    "summary": "Replace a reference-table entry (compacted ref.{table}); agents"
                    " enrich later events with it",
                    "requestBody": {"required": True, "content": {"application/json": {}}},
                    "responses": {
                        "200": _json("The stored entry"),
                        "400": _problem("Body is not JSON"),
                        "404": _problem("Unknown table"),
                        "422": _problem("Invalid key, or unknown or mistyped attributes"),
                        "503": _problem("Kafka unavailable"),
                    },
                }
            },
            "/v1/metrics": {
                "get": {
                    "summary": "Declared metrics (file and API) and the file's last sync errors",
                    "responses": {"200": _json("Declared metrics")},
                },
                "post": {
                    "summary": "Declare a metric (same shape as an entry of metrics.yaml)",
                    "requestBody": {"required": True, "content": {"application/json": {}}},
                    "responses": {
                        "201": _json("The stored metric"),
                        "400": _problem("Body is not JSON"),
                        "409": _problem("Name taken by a metric or a stream"),
                        "422": _problem("Declaration cannot run; errors[] name each path"),
                    },
                },
            },
            "/v1/metrics/{name}": {
                "get": {
                    "summary": "A declared metric, whether the flow runs it, latest window per"
                    " group (?group= adds recent windows); a stream name gives its built-in"
                    " metrics",
                    "responses": {"200": _json("Metric"), "404": _problem("Unknown metric")},
                },
                "delete": {
                    "summary": "Stop and remove an API-declared metric",
                    "responses": {
                        "204": {"description": "Removed"},
                        "404": _problem("Unknown metric"),
                        "409": _problem("Declared in the metrics file"),
                    },
                },
            },
            "/v1/metrics/{name}/results": {
                "get": {
                    "summary": "Windows from ClickHouse (exact, FINAL): ?group= ?from= ?to="
                    " ?final=true ?limit=",
                    "responses": {"200": _json("Windows"), "404": _problem("Unknown metric")},
                }
            },
            "/v1/metrics/{name}/live": {
                "get": {
                    "summary": "Server-sent events: snapshot per group, then each update",
                    "responses": {"200": {"description": "text/event-stream"}},
                }
            },
            "/v1/streams/{stream}/metrics": {
                "get": {
                    "summary": "Latest windowed metrics and recent windows (from Redis)",
                    "parameters": [
                        STREAM_PARAM,
                        {
                            "name": "series",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "field|group, repeatable",
                        },
                    ],
                    "responses": {
                        "200": _json("Latest and recent values"),
                        "404": _problem("Unknown stream"),
                    },
                }
            },
            "/v1/query": {
                "post": {
                    "summary": "Read-only SQL over ClickHouse",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["sql"],
                                    "properties": {"sql": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json("columns, rows, row_count, truncated"),
                        "400": _problem("Not a read statement, or ClickHouse refused it"),
                    },
                }
            },
            "/v1/live/metrics": {
                "get": {
                    "summary": "Server-sent events: `snapshot` then `metric` per update",
                    "parameters": [
                        {"name": n, "in": "query", "schema": {"type": "string"}}
                        for n in ("stream", "field", "group")
                    ],
                    "responses": {"200": {"description": "text/event-stream"}},
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json("ok")}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness of Kafka, Redis, ClickHouse and the sinks",
                    "responses": {"200": _json("ready"), "503": _json("not ready")},
                }
            },
        },
        "components": {
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                        "errors": {"type": "array"},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "accepted": {"type": "integer"},
                        "rejected": {"type": "integer"},
                        "event_ids": {"type": "array", "items": {"type": "string"}},
                    },
                },
                **{
                    n: {"description": f"Avro schema of {n} (see /v1/streams)", "type": "object"}
                    for n in stream_names
                },
            }
        },
    }
