"""The read-only fence of ``POST /v1/query``, decided by ClickHouse's own parser.

A hand-written lexer always knows fewer quoting and comment forms than ClickHouse does (heredocs,
nested comments, backslash escapes), and a statement it misreads is a statement that runs. So
the analyst's text is never parsed here:

1. ``formatQuerySingleLine`` parses it, the text passed as a bound parameter (data, never SQL).
   It accepts exactly one statement ("Multi-statements are not allowed" otherwise) and answers
   that statement re-printed in canonical form; only that form is ever run.
2. ``EXPLAIN AST`` of the canonical form gives the syntax tree, which is checked node by node:
   a read statement at the root (a ``SELECT``/``UNION``, ``SHOW``, ``DESCRIBE`` or ``EXISTS``
   of a table, or ``EXPLAIN`` of one of those); no ``SETTINGS``, ``FORMAT`` or
   ``INTO OUTFILE`` (the API fixes the settings and the format); no table function but a few
   that only generate rows; no ``file()``; no system table but those that describe schemas; the
   audit trail only for holders of ``audit:read``; for a key limited to some streams, no
   other stream's table (its rows in the shared tables are filtered by the caller, with
   ``additional_table_filters``).

A table named without its database is checked as in the database the query runs in, so
``database=system`` cannot turn ``processes`` into ``system.processes``.

``readonly=1`` and the row, time and memory limits are still applied to the query itself, as
settings the analyst cannot reach (step 2 refuses any ``SETTINGS``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from riverbed.core.clickhouse import ClickHouse, ClickHouseError
from riverbed.core.errors import Invalid
from riverbed.core.topology import AUDIT_TABLE, events_table

READ_ROOTS = frozenset({"SelectWithUnionQuery", "ShowTables", "DescribeQuery", "ExistsTableQuery"})
ROW_GENERATORS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generate_series", "one"}
)
SCALAR_DENIED = frozenset({"file"})  # reads a server file into a string
SCHEMA_TABLES = frozenset(
    {
        "one",
        "numbers",
        "databases",
        "tables",
        "columns",
        "functions",
        "table_functions",
        "data_type_families",
        "formats",
        "time_zones",
        "settings",
    }
)


@dataclass(frozen=True)
class Reader:
    """What the fence lets one caller read: ``database`` is the pipeline's, ``current`` the one
    unqualified table names resolve in; ``streams`` None means every stream."""

    database: str
    audit_allowed: bool = False
    streams: frozenset[str] | None = None
    current: str = "default"

    @classmethod
    def of(
        cls,
        database: str,
        audit_allowed: bool,
        streams: Collection[str] | None = None,
        current: str | None = None,
    ) -> Reader:
        return cls(
            database,
            audit_allowed,
            None if streams is None else frozenset(streams),
            current or "default",
        )

    def table_refusal(self, schema: str, table: str) -> str | None:
        """Why ``schema.table`` may not be read, or None."""
        if schema.lower() in ("system", "information_schema") and table.lower() not in (
            SCHEMA_TABLES
        ):
            return "is not readable; system tables that describe schemas are"
        if schema != self.database:
            return None
        if table == AUDIT_TABLE and not self.audit_allowed:
            return "needs scope audit:read"
        prefix = events_table("")
        if (
            self.streams is not None
            and table.startswith(prefix)
            and table[len(prefix) :] not in self.streams
        ):
            return "belongs to a stream this key may not read"
        return None


class QueryRefused(Invalid):
    """Not one read-only statement the fence lets through; the message says what was found."""

    title = "Query not allowed"


@dataclass(frozen=True)
class Node:
    depth: int
    kind: str
    rest: str  # what follows the kind on its line: a name, an alias, "(children N)"

    @property
    def name(self) -> str:
        return self.rest.split(" ", 1)[0] if self.rest else ""


def parse_tree(text: str) -> list[Node]:
    """``EXPLAIN AST`` output (one node per line, one space of indent per level) as nodes."""
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        kind, _, rest = line.strip().partition(" ")
        nodes.append(Node(depth, kind, rest))
    return nodes


def check_tree(nodes: list[Node], reader: Reader) -> None:
    """Raise :class:`QueryRefused` for the first node outside the fence."""
    if not nodes:
        raise QueryRefused("the query is empty")
    root = nodes[0]
    if root.kind == "Explain":
        nodes = [Node(n.depth - 1, n.kind, n.rest) for n in nodes[1:]]
        if not nodes:
            raise QueryRefused("EXPLAIN of nothing")
        root = nodes[0]
    if root.kind not in READ_ROOTS:
        raise QueryRefused(
            f"{root.kind} is not a read statement: only SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN"
        )
    if root.kind == "SelectWithUnionQuery" and _children(nodes, 0) != 1:
        raise QueryRefused("FORMAT, INTO OUTFILE and SETTINGS are chosen by the API; remove them")
    parents: list[Node] = []
    for node in nodes:
        del parents[node.depth :]
        parent = parents[-1] if parents else None
        _check_node(node, parent, reader)
        parents.append(node)


def _children(nodes: list[Node], index: int) -> int:
    depth = nodes[index].depth
    count = 0
    for node in nodes[index + 1 :]:
        if node.depth <= depth:
            break
        if node.depth == depth + 1:
            count += 1
    return count


def _check_node(node: Node, parent: Node | None, reader: Reader) -> None:
    if node.kind == "Set":
        raise QueryRefused("SETTINGS are chosen by the API; remove them")
    in_from = parent is not None and parent.kind == "TableExpression"
    if node.kind == "Function":
        if in_from and node.name not in ROW_GENERATORS:
            raise QueryRefused(f"table function {node.name}() is not allowed")
        if node.name in SCALAR_DENIED:
            raise QueryRefused(f"function {node.name}() is not allowed")
    if node.kind in ("TableIdentifier", "Identifier"):
        # Every qualified name, not only those after FROM: `x IN system.processes` reads a
        # table too, and so does a column of one (`riverbed.audit.actor`).
        _check_name(node.name, node.kind == "TableIdentifier", reader)


def _check_name(name: str, is_table: bool, reader: Reader) -> None:
    parts = [part.strip("`") for part in name.split(".")]
    if is_table and len(parts) == 1:
        parts = [reader.current, parts[0]]
    for schema, table in pairwise(parts):
        refusal = reader.table_refusal(schema, table)
        if refusal:
            raise QueryRefused(f"{name} {refusal}")


def fence(
    clickhouse: ClickHouse,
    sql: str,
    database: str | Reader,
    audit_allowed: bool = False,
    parameters: dict[str, Any] | None = None,
) -> str:
    """The one statement of ``sql`` in canonical form, once the fence lets it through;
    raises :class:`QueryRefused` (a syntax error included, with ClickHouse's message).
    ``database`` is the pipeline's (or the whole :class:`Reader`); ``parameters`` are the
    values of its placeholders (``EXPLAIN AST`` needs them)."""
    reader = database if isinstance(database, Reader) else Reader.of(database, audit_allowed)
    canonical = canonical_form(clickhouse, sql)
    return _fence_canonical(clickhouse, canonical, reader, parameters)


_TRAILING_FORMAT = re.compile(r" FORMAT (?P<name>[A-Za-z][A-Za-z0-9_]*)$")


def fence_with_format(
    clickhouse: ClickHouse,
    sql: str,
    reader: Reader,
    parameters: dict[str, Any] | None = None,
) -> tuple[str, str | None]:
    """As :func:`fence`, for stock clients that end their statement with ``FORMAT Native``:
    ``(the statement without it, the format or None)``. The clause is cut from ClickHouse's
    canonical form, where it is always last, and what remains is the text that is checked
    and run, so a cut in the wrong place can only make a statement that fails the check."""
    canonical = canonical_form(clickhouse, sql)
    found = _TRAILING_FORMAT.search(canonical)
    if found is None:
        return _fence_canonical(clickhouse, canonical, reader, parameters), None
    # What is left is checked and run exactly as it is: EXPLAIN AST parses this very text.
    statement = canonical[: found.start()]
    return _fence_canonical(clickhouse, statement, reader, parameters), found.group("name")


def canonical_form(clickhouse: ClickHouse, sql: str) -> str:
    """``sql`` as ClickHouse re-prints it (one statement, or :class:`QueryRefused`)."""
    if not sql.strip():
        raise QueryRefused("the query is empty")
    try:
        return str(
            clickhouse.query(
                "SELECT formatQuerySingleLine({sql:String})", parameters={"sql": sql}
            ).rows[0][0]
        )
    except ClickHouseError as exc:
        raise QueryRefused(f"not one statement ClickHouse can parse: {_first_line(exc)}") from None


def _fence_canonical(
    clickhouse: ClickHouse, canonical: str, reader: Reader, parameters: dict[str, Any] | None
) -> str:
    try:
        if " INTO OUTFILE " in f" {canonical} ":
            raise QueryRefused("INTO OUTFILE is not allowed")  # before EXPLAIN sees it, too
        tree = clickhouse.query(f"EXPLAIN AST {canonical}", parameters=parameters).rows
    except ClickHouseError as exc:
        raise QueryRefused(f"not one statement ClickHouse can parse: {_first_line(exc)}") from None
    check_tree(parse_tree("\n".join(str(row[0]) for row in tree)), reader)
    return canonical


def _first_line(exc: ClickHouseError) -> str:
    return str(exc).strip().splitlines()[0][:500] if str(exc).strip() else "syntax error"
