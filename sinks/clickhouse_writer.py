"""Writes ``clean.*`` into one table per stream, ``metrics`` and ``dlq.*`` into shared tables.

Tables follow the catalog: a stream created at run time gets its table on its first record, and
a new schema version adds its new columns (``ALTER TABLE ... ADD COLUMN`` with the Avro
default, so rows written before read the default). Every record is resolved from its writer
schema to the stream's latest clean schema before it becomes a row.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Message

from riverbed.core.clickhouse import ClickHouse, ClickHouseError, quote
from riverbed.core.topology import (
    AUDIT_TABLE,
    AUDIT_TOPIC,
    DEAD_LETTERS_TABLE,
    METRIC_RESULTS_TABLE,
    METRIC_RESULTS_TOPIC,
    METRICS_TABLE,
    METRICS_TOPIC,
    events_table,
    stream_of_topic,
)
from riverbed.core.window_versions import stored_version
from schemas import codec, wire
from schemas.registry import SchemaRegistry
from schemas.registry_errors import SchemaNotFound
from schemas.stream_catalog import StreamCatalog
from schemas.system import DEAD_LETTER_SCHEMA
from schemas.wire import WireFormatError
from sinks.ddl import (
    create_audit_table,
    create_dead_letters_table,
    create_metric_results_table,
    create_metrics_table,
    row_converter,
    window_flow_version,
)
from sinks.dead_letters import DeadLetters
from sinks.tables import sync_stream_table

log = logging.getLogger(__name__)
Converter = Callable[[dict[str, Any]], dict[str, Any]]
Row = tuple[dict[str, Any], Message]


def dlq_id(message: Message) -> str:
    """Stable id of a dead letter: where it sits in its topic, and when it was written (an
    in-memory broker restarts its offsets, and an id must never name two letters)."""
    _, timestamp = message.timestamp()
    return f"{message.topic()}/{message.partition()}/{message.offset()}/{timestamp}"


class ClickHouseWriter:
    """Batched inserts, one per table per batch; idempotent through ReplacingMergeTree."""

    name = "clickhouse"

    def __init__(
        self,
        engine: ClickHouse,
        database: str,
        registry: SchemaRegistry,
        catalog: StreamCatalog,
        dead_letters: DeadLetters,
    ) -> None:
        self.engine = engine
        self.database = database
        self.registry = registry
        self.catalog = catalog
        self.dead_letters = dead_letters
        self._converters: dict[int, Converter] = {}
        # stream -> (clean schema id, catalog version) the table was last synced to
        self._table_schema: dict[str, tuple[int, int]] = {}
        self._dead_letter_row = row_converter(DEAD_LETTER_SCHEMA)

    def ensure_tables(self) -> None:
        self.engine.command(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}")
        self.engine.command(create_metrics_table(self.database))
        self.engine.command(create_metric_results_table(self.database))
        for table in (METRICS_TABLE, METRIC_RESULTS_TABLE):
            self.engine.command(window_flow_version(self.database, table))
        self.engine.command(create_dead_letters_table(self.database))
        self.engine.command(create_audit_table(self.database))
        for name in self.catalog.names():
            self._ensure_stream_table(name)

    def _ensure_stream_table(self, stream: str) -> int:
        """Create or evolve the stream's table to its latest clean schema; returns that id."""
        clean_id = self.catalog.ids(stream).clean
        # The catalog's version too: a stream deleted and created again may write with the
        # same clean schema id into a table that is not there any more.
        synced = (clean_id, self.catalog.snapshot().version)
        if self._table_schema.get(stream) == synced:
            return clean_id
        sync_stream_table(self.engine, self.database, stream, self.registry.schema(clean_id))
        self._table_schema[stream] = synced
        return clean_id

    def _converter(self, schema_id: int) -> Converter:
        converter = self._converters.get(schema_id)
        if converter is None:
            converter = row_converter(self.registry.schema(schema_id))
            self._converters[schema_id] = converter
        return converter

    def write(self, messages: Sequence[Message]) -> None:
        rows: dict[str, list[Row]] = defaultdict(list)
        for message in messages:
            topic = message.topic() or ""
            try:
                table, row = self._row(topic, message)
                rows[table].append((row, message))
            except (WireFormatError, SchemaNotFound, ValueError, TypeError, KeyError) as exc:
                if not topic.startswith("clean."):
                    raise  # written by our own flow or sinks: a bad record is a bug, not data
                self._dead_letter(message, f"clickhouse: cannot convert: {exc}")
        for table, pairs in rows.items():
            self._insert(table, pairs)

    def _row(self, topic: str, message: Message) -> tuple[str, dict[str, Any]]:
        raw = message.value() or b""
        if topic == METRICS_TOPIC:
            schema_id, record = codec.decode(self.registry, raw)
            return METRICS_TABLE, _ranked(self._converter(schema_id)(record))
        if topic == METRIC_RESULTS_TOPIC:
            schema_id, record = codec.decode(self.registry, raw)
            row = _ranked(self._converter(schema_id)(record), bool(record["deleted"]))
            return METRIC_RESULTS_TABLE, {**row, "deleted": int(record["deleted"])}
        if topic == AUDIT_TOPIC:
            schema_id, record = codec.decode(self.registry, raw)
            return AUDIT_TABLE, self._converter(schema_id)(record)
        if topic.startswith("dlq."):
            _, record = codec.decode(self.registry, raw)
            return DEAD_LETTERS_TABLE, {**self._dead_letter_row(record), "dlq_id": dlq_id(message)}
        stream = stream_of_topic(topic)
        self.catalog.reader_ids(stream, wire.split(raw)[0])  # refreshes on an unseen version
        clean_id = self._ensure_stream_table(stream)
        _, record = codec.decode(self.registry, raw, reader_id=clean_id)
        return events_table(stream), self._converter(clean_id)(record)

    def _insert(self, table: str, pairs: list[Row]) -> None:
        """Insert; if ClickHouse refuses while healthy, bisect to dead-letter the bad rows.

        A refused row would otherwise be retried forever and hold its partition. Re-inserting
        the good halves is harmless: the tables collapse duplicates.
        """
        try:
            self.engine.insert_json_rows(self.database, table, [row for row, _ in pairs])
            return
        except ClickHouseError as exc:
            self.engine.query("SELECT 1")  # raises if ClickHouse itself is down: retry later
            if table in (METRICS_TABLE, METRIC_RESULTS_TABLE, DEAD_LETTERS_TABLE, AUDIT_TABLE):
                raise
            if len(pairs) == 1:
                self._dead_letter(pairs[0][1], f"clickhouse: insert refused: {exc}")
                return
        middle = len(pairs) // 2
        self._insert(table, pairs[:middle])
        self._insert(table, pairs[middle:])

    def _dead_letter(self, message: Message, error: str) -> None:
        log.warning("dead letter from %s: %s", message.topic(), error)
        self.dead_letters.send(
            stream_of_topic(message.topic() or ""),
            "sink",
            error,
            message.value() or b"",
            message.key(),
            codec.event_id_of(self.registry, message.value() or b""),
        )


def _ranked(row: dict[str, Any], deleted: bool = False) -> dict[str, Any]:
    """A window row whose ``version`` is its rank (``riverbed.core.window_versions``)."""
    version = int(row["version"])
    rank = stored_version(version, bool(row["final"]), int(row["count"]), deleted)
    return {**row, "version": rank, "flow_version": version}
