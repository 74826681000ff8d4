"""Every route of the API in one table: path, method, handler, name, the scope it needs, and what
it takes and answers.

The Starlette router (``starlette_routes``) and ``/openapi.json`` (``api.openapi``) are both built
from this table, so no route can exist undocumented or without a scope. Every route checks its
scope first (``api.auth.authorize``); ``PUBLIC`` routes (health, the API description) need none.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route

from api import (
    admin,
    audit,
    auth,
    dlq,
    docs,
    health,
    metrics,
    query,
    reads,
    registry,
    sessions,
    streams_admin,
)
from api.endpoint import AUTHENTICATED, PUBLIC, Endpoint, Param
from api.ingest import route as ingest_route
from api.live import endpoints as live
from api.models import (
    Accepted,
    CompatibilityConfig,
    Login,
    NewKey,
    NewSchema,
    NewStream,
    NewUser,
    PasswordChange,
    RefreshRequest,
    RegisterSchema,
    ReplayRequest,
    SqlQuery,
    TokenPair,
    UserChange,
)
from api.ratelimit import RateLimiter
from api.reference import delete_entry, get_entry, put_entry
from riverbed.core.errors import RiverbedError
from streams.metrics.definition import MetricDefinition

GET, POST, PUT, PATCH, DELETE = "GET", "POST", "PUT", "PATCH", "DELETE"
SSE = "text/event-stream"
TIME_PARAMS = (
    Param("from", "epoch ms or ISO-8601, inclusive"),
    Param("to", "epoch ms or ISO-8601, exclusive"),
)
PAGE_PARAMS = (
    Param("limit", "1..1000, default 100", "integer"),
    Param("cursor", "next_cursor of the previous page"),
)
NOT_FOUND_STREAM = {404: "Unknown stream"}
STREAM_TOKEN_PARAM = Param(
    auth.STREAM_TOKEN, "a token from POST /v1/auth/stream-token, for EventSource (no headers)"
)
LAST_EVENT_ID_PARAM = Param(
    "last_event_id",
    "resume after this message id (as the Last-Event-ID header EventSource sends itself)",
)
REGISTRY = "/registry"


def _events_body(catalog: dict[str, Any]) -> dict[str, Any]:
    """One event of any stream, or an array of them: each stream's Avro schema as JSON Schema."""
    one = {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in sorted(catalog)]}
    return {"oneOf": [one, {"type": "array", "items": one}]}


# The table is laid out by hand, one route to a block; the formatter would give each argument
# a line of its own and the table would no longer read as one.
# fmt: off
STREAM_ROUTES = (
    Endpoint(
        "/v1/streams", GET, reads.list_streams, "list_streams", "streams:read",
        "List streams with their Avro schemas", {200: "The catalog"}, tag="streams",
        filters_streams=True,
    ),
    Endpoint(
        "/v1/streams", POST, streams_admin.create_stream, "create_stream", "streams:admin",
        "Declare a stream at run time",
        {201: "The stream", 400: "Body is not JSON", 409: "Stream exists",
         422: "Invalid declaration; errors[] names every flaw"},
        body=NewStream, tag="streams",
    ),
    Endpoint(
        "/v1/streams/{stream}", GET, reads.get_stream, "get_stream", "streams:read",
        "One stream", {200: "The stream", **NOT_FOUND_STREAM}, tag="streams",
    ),
    Endpoint(
        "/v1/streams/{stream}", DELETE, streams_admin.delete_stream, "delete_stream",
        "streams:admin", "Delete a stream: stop intake, process what it accepted, tear it down",
        {200: "What was deleted, and where the stored events are kept", **NOT_FOUND_STREAM,
         409: "Declared in streams.toml, or used by declared metrics",
         503: "Still processing what the stream accepted; repeat the DELETE"},
        description="The stream takes no more events at once (409 to producers). Once the "
        "agents and the ClickHouse sink have committed everything it accepted, it is removed "
        "from the catalog, its schema subjects are soft-deleted and its live values cleared. "
        "Its ClickHouse table is kept under a dated name "
        "(`events_{stream}__deleted_YYYYMMDDhhmmss`) unless `purge=true`, which drops it and "
        "the stream's dead letters too. Its Kafka topics are kept (every record in them is "
        "processed); delete them with Kafka's tools if the name will not be used again.",
        params=(Param("purge", "true: drop the stored events and dead letters as well"),),
        tag="streams",
    ),
    Endpoint(
        "/v1/streams/{stream}/schema", PUT, streams_admin.evolve_schema, "evolve_schema",
        "streams:admin", "Evolve a stream's schema (checked against its compatibility level)",
        {200: "The stream", **NOT_FOUND_STREAM, 409: "Incompatible schema",
         422: "Invalid schema"},
        body=NewSchema, tag="streams",
    ),
)

EVENT_ROUTES = (
    Endpoint(
        "/v1/streams/{stream}/events", POST, ingest_route.post_events, "post_events",
        "events:write",
        "Ingest events",
        {202: "All events accepted", 207: "Some accepted; errors[] names every problem",
         400: "Malformed body, or no event valid (errors[])", **NOT_FOUND_STREAM,
         413: "Body or batch too large", 503: "Broker unavailable; retry after Retry-After"},
        description=(
            "Body: one JSON object, a JSON array, or NDJSON (Content-Type: application/x-ndjson)."
            " Each event is validated against the stream's Avro schema and every problem is "
            "reported at its JSON Pointer. Optional `event_id` (string) makes retries safe: "
            "duplicates are dropped. Batch rule: valid events are accepted and invalid ones "
            "reported by index and recorded in dlq.{stream} (207); with ?atomic=true any invalid "
            "event rejects the whole request (400). 202/207 are sent only after Kafka "
            "acknowledged every accepted event."
        ),
        params=(
            Param("atomic", "reject the whole request if any event is invalid", "boolean"),
            Param("schema_version", "validate and write with this version (or 'latest')"),
        ),
        body=_events_body,
        body_types=("application/json", "application/x-ndjson", "application/jsonlines"),
        answer=Accepted, tag="events", audit=False,  # data, not administration
    ),
    Endpoint(
        "/v1/streams/{stream}/events", GET, reads.list_events, "list_events", "events:read",
        "Read stored events, newest first",
        {200: "A page of events", 400: "Bad parameter", **NOT_FOUND_STREAM},
        params=TIME_PARAMS + PAGE_PARAMS, tag="events",
    ),
    Endpoint(
        "/v1/streams/{stream}/dlq", GET, dlq.list_dead_letters, "list_dead_letters", "dlq:read",
        "Dead letters of a stream, newest first, with counts by stage",
        {200: "A page of dead letters", 400: "Bad parameter", **NOT_FOUND_STREAM},
        params=(Param("stage", "ingest, process, aggregate or sink"), *PAGE_PARAMS),
        tag="events",
    ),
    Endpoint(
        "/v1/streams/{stream}/dlq/replay", POST, dlq.replay_dead_letters, "replay_dead_letters",
        "dlq:replay", "Put dead letters back where they failed, once fixed",
        {200: "What was replayed, failed and skipped", 400: "Malformed body",
         **NOT_FOUND_STREAM, 503: "Broker unavailable"},
        body=ReplayRequest, tag="events",
    ),
    Endpoint(
        "/v1/reference/{table}/{key}", PUT, put_entry, "put_reference_entry", "reference:write",
        "Replace a reference-table entry (compacted ref.{table}); later events are enriched "
        "with it",
        {200: "The stored entry", 400: "Body is not JSON", 404: "Unknown table",
         422: "Invalid key, or unknown or mistyped attributes", 503: "Kafka unavailable"},
        body={"type": "object", "additionalProperties": True}, tag="events",
    ),
    Endpoint(
        "/v1/reference/{table}/{key}", GET, get_entry, "get_reference_entry", "reference:read",
        "A reference-table entry, as enrichment will use it",
        {200: "The entry", 404: "Unknown table or key",
         422: "Invalid key", 503: "Reference tables still loading"},
        tag="events",
    ),
    Endpoint(
        "/v1/reference/{table}/{key}", DELETE, delete_entry, "delete_reference_entry",
        "reference:write",
        "Delete a reference-table entry (a tombstone in ref.{table}); later events are no "
        "longer enriched from it",
        {204: "Deleted (or was absent)", 404: "Unknown table", 422: "Invalid key",
         503: "Kafka unavailable"},
        tag="events",
    ),
    Endpoint(
        "/v1/query", POST, query.post_query, "query", "query:sql",
        "Read-only SQL over ClickHouse",
        {200: "columns, rows, row_count, truncated; with format csv, ndjson or parquet, the "
              "file, streamed",
         400: "Not a read statement, or ClickHouse refused it", 413: "Query too large",
         504: "Query timed out"},
        body=SqlQuery, tag="query",
    ),
)

METRIC_ROUTES = (
    Endpoint(
        "/v1/streams/{stream}/metrics", GET, reads.get_metrics, "get_stream_metrics",
        "metrics:read", "A stream's built-in window metrics: latest and recent windows",
        {200: "Latest and recent values", **NOT_FOUND_STREAM},
        params=(Param("series", "field|group", repeated=True),), tag="metrics",
    ),
    Endpoint(
        "/v1/metrics", GET, metrics.list_metrics, "list_metrics", "metrics:read",
        "Declared metrics (file and API) and the metrics file's last sync errors",
        {200: "Declared metrics"}, tag="metrics",
    ),
    Endpoint(
        "/v1/metrics", POST, metrics.create_metric, "create_metric", "metrics:admin",
        "Declare a metric (the shape of an entry of metrics.yaml)",
        {201: "The stored metric", 400: "Body is not JSON",
         409: "Name taken by a metric or a stream",
         422: "Declaration cannot run; errors[] names every problem"},
        body=MetricDefinition, tag="metrics",
    ),
    Endpoint(
        "/v1/metrics/{name}", GET, metrics.get_metric, "get_metric", "metrics:read",
        "A declared metric, whether the flow runs it, and its latest window per group; a "
        "stream's name gives the stream's built-in metrics",
        {200: "The metric", 404: "Unknown metric"},
        params=(
            Param("group", "also return this group's recent windows", repeated=True),
            Param("series", "for a stream's name: field|group, repeatable", repeated=True),
        ),
        tag="metrics",
    ),
    Endpoint(
        "/v1/metrics/{name}", PUT, metrics.put_metric, "put_metric", "metrics:admin",
        "Declare or replace the metric of this name (the body's name, if given, must match)",
        {200: "Replaced; it starts afresh", 201: "Declared",
         409: "Declared in the metrics file, or the name of a stream",
         422: "Declaration cannot run; errors[] names every problem"},
        body=MetricDefinition, tag="metrics",
    ),
    Endpoint(
        "/v1/metrics/{name}", DELETE, metrics.delete_metric, "delete_metric", "metrics:admin",
        "Stop and remove a metric declared through the API",
        {204: "Removed", 404: "Unknown metric", 409: "Declared in the metrics file"},
        tag="metrics",
    ),
    Endpoint(
        "/v1/metrics/{name}/results", GET, metrics.metric_results, "metric_results",
        "metrics:read", "A metric's windows from ClickHouse (exact)",
        {200: "Windows", 400: "Bad parameter", 404: "Unknown metric"},
        params=(
            Param("group", "the group key"),
            *TIME_PARAMS,
            Param("final", "only closed windows", "boolean"),
            Param("limit", "1..1000", "integer"),
        ),
        tag="metrics",
    ),
    Endpoint(
        "/v1/metrics/{name}/live", GET, metrics.live_metric, "follow_metric", "metrics:read",
        "Server-sent events: a snapshot per group, then each update; resumable",
        {200: "An event stream", 404: "Unknown metric", 429: "Too many live connections",
         503: "Redis does not answer"},
        params=(Param("group", "only this group key"), LAST_EVENT_ID_PARAM, STREAM_TOKEN_PARAM),
        media=SSE,
        tag="metrics",
    ),
    Endpoint(
        "/v1/live/metrics", GET, live.live_metrics, "follow_stream_metrics", "metrics:read",
        "Server-sent events: `snapshot` and `ready`, then `metric` per update of built-in "
        "metrics, each with an id; a reconnect with `Last-Event-ID` gets what it missed",
        {200: "An event stream", 404: "Unknown stream", 429: "Too many live connections",
         503: "Redis does not answer"},
        params=(Param("stream", "only this stream"), Param("field", "only this field"),
                Param("group", "only this group"), LAST_EVENT_ID_PARAM, STREAM_TOKEN_PARAM),
        media=SSE, tag="metrics",
    ),
    Endpoint(
        "/v1/live/events", GET, live.live_events, "follow_events", "events:read",
        "Server-sent events: `ready`, then `tail` per sampled processed event (at most "
        "RIVERBED_LIVE_TAIL_EVENTS_PER_SECOND per stream), each with an id; resumable",
        {200: "An event stream", 404: "Unknown stream", 429: "Too many live connections",
         503: "Redis does not answer"},
        params=(Param("stream", "only this stream"), LAST_EVENT_ID_PARAM, STREAM_TOKEN_PARAM),
        media=SSE, tag="metrics",
    ),
    Endpoint(
        "/v1/live/alerts", GET, live.live_alerts, "follow_alerts", "alerts:read",
        "Server-sent events: `ready`, then `alert` as alerts fire and resolve, each with an "
        "id; resumable",
        {200: "An event stream", 404: "Unknown stream", 429: "Too many live connections",
         503: "Redis does not answer"},
        params=(Param("stream", "only this stream"), Param("rule", "only this rule"),
                LAST_EVENT_ID_PARAM, STREAM_TOKEN_PARAM),
        media=SSE, tag="metrics",
    ),
    Endpoint(
        "/v1/live/status", GET, live.live_status, "follow_status", AUTHENTICATED,
        "Server-sent events: a `snapshot` per component of the pipeline's processes, `ready`, "
        "then `status` as processes start, stop or crash and embedded engines restart; "
        "resumable",
        {200: "An event stream", 429: "Too many live connections",
         503: "Redis does not answer"},
        params=(Param("component", "only this component (api, agents, flow, ...)"),
                LAST_EVENT_ID_PARAM, STREAM_TOKEN_PARAM),
        media=SSE, tag="operations",
    ),
    Endpoint(
        "/live", GET, live.live_page(), "live_page", PUBLIC,
        "A page that follows live metrics in a browser (this origin; it signs in with a "
        "session or an API key, then uses the routes above)",
        {200: "An HTML page"}, media="text/html", tag="metrics", mount=True,
    ),
)

OPERATIONS_ROUTES = (
    Endpoint(
        "/healthz", GET, health.healthz, "healthz", PUBLIC, "Liveness: the process answers",
        {200: "ok"}, tag="operations",
    ),
    Endpoint(
        "/readyz", GET, health.readyz, "readyz", PUBLIC,
        "Readiness of Kafka, Redis and ClickHouse; with a credential, also errors, "
        "processes, engine restarts and stream counters",
        {200: "Ready", 503: "Not ready, or draining"}, tag="operations",
    ),
    Endpoint(
        "/openapi.json", GET, docs.openapi_json, "openapi", PUBLIC,
        "This description of the API (OpenAPI 3.1), with every route and the scope it needs",
        {200: "The OpenAPI document"}, tag="operations",
    ),
    Endpoint(
        "/docs", GET, docs.swagger_ui(), "docs", PUBLIC,
        "Interactive documentation (Swagger UI, served from the package, no CDN)",
        {200: "An HTML page"}, media="text/html", tag="operations", mount=True,
    ),
)


IDENTITY_ROUTES = (
    Endpoint(
        "/v1/auth/login", POST, sessions.login, "login", PUBLIC,
        "Log in with a username and password: an access token and a refresh token",
        {200: "Tokens", 401: "Wrong username or password",
         422: "Body does not name a username and password",
         429: "Too many failed logins; retry after Retry-After"},
        body=Login, answer=TokenPair, tag="identity",
    ),
    Endpoint(
        "/v1/auth/refresh", POST, sessions.refresh, "refresh", PUBLIC,
        "Trade a refresh token for new tokens (each refresh token works once)",
        {200: "Tokens", 401: "Unknown, used, revoked or expired refresh token"},
        body=RefreshRequest, answer=TokenPair, tag="identity",
    ),
    Endpoint(
        "/v1/auth/logout", POST, sessions.logout, "logout", PUBLIC,
        "End the login a refresh token belongs to", {204: "Logged out"},
        body=RefreshRequest, tag="identity",
    ),
    Endpoint(
        "/v1/auth/session", POST, sessions.open_session, "open_session", PUBLIC,
        "Log in a browser: the tokens go into HttpOnly, SameSite=Strict cookies",
        {200: "Logged in; the cookies are set", 401: "Wrong username or password",
         403: "Sent from another site", 429: "Too many failed logins"},
        body=Login, tag="identity",
    ),
    Endpoint(
        "/v1/auth/session/refresh", POST, sessions.refresh_session, "refresh_session", PUBLIC,
        "Renew a browser login from its refresh cookie",
        {200: "Renewed; new cookies are set", 401: "No session, or it ended",
         403: "Sent from another site"},
        tag="identity",
    ),
    Endpoint(
        "/v1/auth/session", DELETE, sessions.close_session, "close_session", PUBLIC,
        "Log a browser out: its login ends and its cookies are cleared",
        {204: "Logged out", 403: "Sent from another site"}, tag="identity",
    ),
    Endpoint(
        "/v1/auth/stream-token", POST, sessions.stream_token, "stream_token", AUTHENTICATED,
        "A one-minute token for EventSource, which cannot send headers: "
        "open a live route with ?stream_token=",
        {200: "The token", 403: "No scope of a live route to give"}, tag="identity",
    ),
    Endpoint(
        "/.well-known/jwks.json", GET, sessions.jwks, "jwks", PUBLIC,
        "The public keys that verify access tokens (JWKS; empty with HS256)",
        {200: "A JSON Web Key Set"}, tag="identity",
    ),
    Endpoint(
        "/v1/me", GET, sessions.me, "me", AUTHENTICATED,
        "Who the credential is: the user or the key, with its scopes", {200: "The caller"},
        tag="identity",
    ),
    Endpoint(
        "/v1/me/password", PUT, sessions.change_password, "change_password", AUTHENTICATED,
        "Change your password (ends your other logins)",
        {204: "Changed", 403: "API keys have no password",
         422: "Wrong current password, or a new one of fewer than 12 characters"},
        body=PasswordChange, tag="identity",
    ),
    Endpoint(
        "/v1/users", GET, admin.list_users, "list_users", "users:admin", "Users",
        {200: "Every user"}, tag="identity",
    ),
    Endpoint(
        "/v1/users", POST, admin.create_user, "create_user", "users:admin",
        "Create a user with roles", {201: "The user", 409: "Username taken",
                                     422: "Invalid name, password or roles"},
        body=NewUser, tag="identity",
    ),
    Endpoint(
        "/v1/users/{username}", PATCH, admin.change_user, "change_user", "users:admin",
        "Change a user's roles, or disable (signs them out) or enable them",
        {200: "The user", 404: "No such user", 422: "Unknown roles"},
        body=UserChange, tag="identity",
    ),
    Endpoint(
        "/v1/audit", GET, audit.list_audit, "list_audit", "audit:read",
        "The audit trail, newest first: logins, key and user changes, stream, schema and "
        "metric changes, replays, queries",
        {200: "Audit events", 400: "Bad parameter"},
        params=(
            Param("actor", "key:<prefix>, user:<id> or anonymous"),
            Param("action", "the operation, e.g. create_key, login, query"),
            Param("outcome", "success, failure or denied"),
            *TIME_PARAMS,
            Param("limit", "1..1000, default 100", "integer"),
        ),
        tag="identity",
    ),
    Endpoint(
        "/v1/keys", GET, admin.list_keys, "list_keys", "keys:admin",
        "API keys (never their secrets)", {200: "Every key"}, tag="identity",
    ),
    Endpoint(
        "/v1/keys", POST, admin.create_key, "create_key", "keys:admin",
        "Create an API key from roles and scopes, optionally limited to streams; the key is in "
        "this answer only",
        {201: "The key and what it grants", 422: "Unknown roles or scopes, or none"},
        body=NewKey, tag="identity",
    ),
    Endpoint(
        "/v1/keys/{prefix}", DELETE, admin.revoke_key, "revoke_key", "keys:admin",
        "Revoke a key at once", {200: "The revoked key", 404: "No such key"}, tag="identity",
    ),
)


def _registry(path: str, method: str, handler: Callable[..., Any], name: str, summary: str,
              responses: dict[int, str], **options: Any) -> Endpoint:
    scope = "registry:read" if method == GET else "registry:write"
    return Endpoint(REGISTRY + path, method, handler, name, scope, summary, responses,
                    tag="registry", media=registry.MEDIA_TYPE, body_types=REGISTRY_TYPES,
                    open_params=True, **options)


SUBJECT_NOT_FOUND = {404: "Subject or version not found"}
# What Confluent's clients send, and plain JSON for everyone else.
REGISTRY_TYPES = (
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
)
REGISTRY_ROUTES = (
    _registry("/subjects", GET, registry.list_subjects, "registry_list_subjects",
              "Subjects", {200: "Subject names"},
              params=(Param("deleted", "include soft-deleted subjects", "boolean"),)),
    _registry("/subjects/{subject}/versions", GET, registry.list_versions,
              "registry_list_versions", "Versions of a subject",
              {200: "Version numbers", **SUBJECT_NOT_FOUND}),
    _registry("/subjects/{subject}/versions", POST, registry.register, "registry_register",
              "Register a schema under a subject (idempotent)",
              {200: "The schema id", 409: "Incompatible schema", 422: "Invalid schema"},
              body=RegisterSchema),
    _registry("/subjects/{subject}/versions/{version}", GET, registry.get_version,
              "registry_get_version", "One version of a subject ('latest' allowed)",
              {200: "The version", **SUBJECT_NOT_FOUND}),
    _registry("/subjects/{subject}/versions/{version}", DELETE, registry.delete_version,
              "registry_delete_version", "Soft-delete a version (?permanent=true after that)",
              {200: "The version number", **SUBJECT_NOT_FOUND,
               422: "A pipeline subject's versions cannot be deleted"},
              params=(Param("permanent", "delete for good", "boolean"),)),
    _registry("/subjects/{subject}/versions/{version}/schema", GET,
              registry.get_version_schema, "registry_get_version_schema",
              "The schema of one version, unwrapped", {200: "The schema", **SUBJECT_NOT_FOUND}),
    _registry("/subjects/{subject}", POST, registry.lookup, "registry_lookup",
              "Is this schema registered under the subject?",
              {200: "The matching version", **SUBJECT_NOT_FOUND, 422: "Invalid schema"},
              body=RegisterSchema),
    _registry("/subjects/{subject}", DELETE, registry.delete_subject,
              "registry_delete_subject", "Soft-delete a subject",
              {200: "The deleted versions", **SUBJECT_NOT_FOUND,
               422: "A pipeline subject cannot be deleted"}),
    _registry("/schemas/ids/{id}", GET, registry.get_schema, "registry_get_schema",
              "A schema by its global id",
              {200: "The schema", 404: "Schema not found", 422: "The id is not an integer"}),
    _registry("/compatibility/subjects/{subject}/versions/{version}", POST,
              registry.check_compatibility, "registry_check_compatibility",
              "Would this schema be compatible with a version?",
              {200: "is_compatible, and messages with ?verbose=true", **SUBJECT_NOT_FOUND,
               422: "Invalid schema"},
              params=(Param("verbose", "explain each incompatibility", "boolean"),),
              body=RegisterSchema),
    _registry("/config", GET, registry.get_config, "registry_get_global_config",
              "The global compatibility level", {200: "The level"}),
    _registry("/config", PUT, registry.put_config, "registry_put_global_config",
              "Set the global compatibility level", {200: "The level", 422: "Unknown level"},
              body=CompatibilityConfig),
    _registry("/config/{subject}", GET, registry.get_config, "registry_get_subject_config",
              "A subject's compatibility level", {200: "The level", **SUBJECT_NOT_FOUND},
              params=(Param("defaultToGlobal", "fall back to the global level", "boolean"),)),
    _registry("/config/{subject}", PUT, registry.put_config, "registry_put_subject_config",
              "Set a subject's compatibility level", {200: "The level", 422: "Unknown level"},
              body=CompatibilityConfig),
)

# fmt: on

ROUTES: tuple[Endpoint, ...] = (
    STREAM_ROUTES
    + EVENT_ROUTES
    + METRIC_ROUTES
    + IDENTITY_ROUTES
    + OPERATIONS_ROUTES
    + REGISTRY_ROUTES
)


def starlette_routes(endpoints: tuple[Endpoint, ...] = ROUTES) -> list[BaseRoute]:
    """One Starlette route per (path, method); Starlette tries the next on a method mismatch.
    An endpoint whose handler is an ASGI app (the docs' static files) is mounted; one that
    takes a body only accepts it in the media types it declares."""
    return [
        Mount(e.path, app=e.handler, name=e.name)
        if e.mount
        else Route(e.path, _guarded(e), methods=[e.method], name=e.name)
        for e in endpoints
    ]


def _guarded(endpoint: Endpoint) -> Callable[..., Any]:
    """The handler, behind checks of what the route declares: first its scope (401/403 before
    anything else is said about the request), then the caller's rate limit (429), then its
    query parameters (a typo like ``?limt=5`` is a 400, not silently a default) and, when it
    takes a body, the body's media type. A browser sends text/plain or a form cross-origin
    without asking first; refusing any type but the route's own keeps such a request (a CSRF)
    from being parsed.

    An endpoint with ``open_params`` (the registry's) takes whatever parameters it is sent.
    """
    accepted = endpoint.body_types if endpoint.body is not None else None
    known = None if endpoint.open_params else frozenset(p.name for p in endpoint.params)
    handler = endpoint.handler
    is_async = inspect.iscoroutinefunction(handler)

    async def checked(request: Request) -> Any:
        auth.authorize(endpoint, request)
        limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
        decision = await limiter.check(endpoint, request) if limiter is not None else None
        if known is not None:
            unknown = sorted(set(request.query_params) - known)
            if unknown:
                raise UnknownParameter(unknown, known)
        if accepted is not None:
            media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media not in accepted:
                raise UnsupportedMediaType(media, accepted)
        if is_async:
            response = await handler(request)
        else:
            response = await run_in_threadpool(handler, request)
        if decision is not None:
            response.headers.update(decision.headers())
        return response

    if not endpoint.audited:
        return checked

    async def audited(request: Request) -> Any:
        """The same, with what happened written to the audit trail, refusals included."""
        status, outcome = 500, None
        try:
            response = await checked(request)
            status = response.status_code
            return response
        except RiverbedError as exc:
            status = exc.status
            if isinstance(exc, auth.Unauthenticated | auth.Forbidden):
                outcome = audit.DENIED
            raise
        except HTTPException as exc:
            status = exc.status_code
            raise
        finally:
            await audit.record(request, endpoint, status, outcome)

    return audited


class UnknownParameter(RiverbedError):
    status, title = 400, "Unknown parameter"

    def __init__(self, unknown: list[str], known: frozenset[str]) -> None:
        takes = ", ".join(sorted(known)) if known else "no query parameters"
        super().__init__(f"unknown query parameter {', '.join(unknown)}; this route takes {takes}")
        self.unknown = unknown

    def extra(self) -> dict[str, Any]:
        return {"parameters": self.unknown}


class UnsupportedMediaType(RiverbedError):
    status, title = 415, "Unsupported media type"

    def __init__(self, media: str, accepted: tuple[str, ...]) -> None:
        super().__init__(
            f"send the body as {' or '.join(accepted)}"
            + (f", not {media}" if media else " (no Content-Type was given)")
        )
        self.accepted = accepted

    def extra(self) -> dict[str, Any]:
        return {"accepted": list(self.accepted)}
