"""Writes ``clean.*`` into one table per stream and ``metrics`` into the metrics table."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Message

from schemas import codec
from schemas.catalog import METRICS_TOPIC, StreamSpec, stream_of_topic
from schemas.registry import SchemaNotFound, SchemaRegistry
from schemas.wire import WireFormatError
from sinks.clickhouse import ClickHouse, ClickHouseError
from sinks.ddl import (
    METRICS_TABLE,
    create_events_table,
    create_metrics_table,
    events_table,
    quote,
    row_converter,
)
from sinks.dead_letters import DeadLetters

log = logging.getLogger(__name__)
Converter = Callable[[dict[str, Any]], dict[str, Any]]


class ClickHouseWriter:
    """Batched inserts, one per table per batch; idempotent through ReplacingMergeTree."""

    name = "clickhouse"

    def __init__(
        self,
        engine: ClickHouse,
        database: str,
        registry: SchemaRegistry,
        catalog: dict[str, StreamSpec],
        dead_letters: DeadLetters,
    ) -> None:
        self.engine = engine
        self.database = database
        self.registry = registry
        self.catalog = catalog
        self.dead_letters = dead_letters
        self._converters: dict[int, Converter] = {}

    def ensure_tables(self) -> None:
        self.engine.command(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}")
        for name, spec in self.catalog.items():
            self.engine.command(create_events_table(self.database, name, spec.clean_schema))
        self.engine.command(create_metrics_table(self.database))

    def _converter(self, schema_id: int) -> Converter:
        converter = self._converters.get(schema_id)
        if converter is None:
            converter = row_converter(self.registry.schema(schema_id))
            self._converters[schema_id] = converter
        return converter

    def write(self, messages: Sequence[Message]) -> None:
        rows: dict[str, list[tuple[dict[str, Any], Message]]] = defaultdict(list)
        for message in messages:
            topic = message.topic() or ""
            table = (
                METRICS_TABLE if topic == METRICS_TOPIC else events_table(stream_of_topic(topic))
            )
            try:
                schema_id, record = codec.decode(self.registry, message.value() or b"")
                rows[table].append((self._converter(schema_id)(record), message))
            except (WireFormatError, SchemaNotFound, ValueError, TypeError, KeyError) as exc:
                if topic == METRICS_TOPIC:
                    raise  # written by our own flow: a bad record here is a bug, not data
                self._dead_letter(message, f"clickhouse: cannot convert: {exc}")
        for table, pairs in rows.items():
            self._insert(table, pairs)

    def _insert(self, table: str, pairs: list[tuple[dict[str, Any], Message]]) -> None:
        """Insert; if ClickHouse refuses while healthy, bisect to dead-letter the bad rows.

        A refused row would otherwise be retried forever and hold its partition. Re-inserting
        the good halves is harmless: the tables collapse duplicates.
        """
        try:
            self.engine.insert_json_rows(self.database, table, [row for row, _ in pairs])
            return
        except ClickHouseError as exc:
            self.engine.query("SELECT 1")  # raises if ClickHouse itself is down: retry later
            if table == METRICS_TABLE:
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
        )
