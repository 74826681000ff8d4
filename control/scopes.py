"""What a caller may be granted: scopes (one per kind of action) and roles (named sets of them).

Every route of the API declares one scope (``api.routes``); a key or a user carries a set. The
names live here, in the contracts layer, because the store (keys, and users next) validates
them and the CLI hands them out without importing the web layer.
"""

from __future__ import annotations

PUBLIC = "public"
#: Any valid credential: what a caller needs to see itself.
AUTHENTICATED = "authenticated"
#: Every scope a route may need, with what it grants (shown in /openapi.json).
SCOPES: dict[str, str] = {
    PUBLIC: "no credentials needed",
    AUTHENTICATED: "any valid key or login (yourself: profile, password)",
    "streams:read": "list streams and read their declarations",
    "streams:admin": "declare streams and evolve their schemas",
    "events:write": "post events to a stream",
    "events:read": "read stored events",
    "dlq:read": "list dead letters",
    "dlq:replay": "replay dead letters",
    "reference:read": "read reference-table entries",
    "reference:write": "change reference-table entries",
    "metrics:read": "read metrics and follow them live",
    "metrics:admin": "declare and remove metrics",
    "alerts:read": "follow alerts live",
    "query:sql": "run read-only SQL over ClickHouse",
    "registry:read": "read the schema registry",
    "registry:write": "register schemas, delete versions, set compatibility",
    "users:admin": "create users, change their roles, disable them",
    "keys:admin": "create, list and revoke API keys",
    "audit:read": "read the audit trail",
}
#: The scopes a credential can be given (``public`` needs none, every one is ``authenticated``).
GRANTABLE = frozenset(SCOPES) - {PUBLIC, AUTHENTICATED}

#: Roles: the sets of scopes the four kinds of users need. A key may be given a role, scopes,
#: or both (the union).
ROLES: dict[str, frozenset[str]] = {
    "admin": GRANTABLE,
    "analyst": frozenset(
        {
            "streams:read",
            "events:read",
            "dlq:read",
            "metrics:read",
            "alerts:read",
            "query:sql",
            "registry:read",
            "reference:read",
        }
    ),
    "producer": frozenset({"streams:read", "events:write", "dlq:read"}),
    "viewer": frozenset({"streams:read", "metrics:read", "alerts:read"}),
}
