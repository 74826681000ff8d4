"""Reference tables in the agents' memory, following their compacted ``ref.*`` topics.

A confluent-kafka consumer thread reads every ``ref.TABLE`` topic from the beginning into a
dict per table and keeps following it, so an entry written by ``PUT /v1/reference`` reaches the
agents' enrichment within a poll interval. Lookups are plain dict reads on the event loop.

Why not a Faust GlobalTable with ``ref.TABLE`` as its changelog (tried on the embedded broker):
faust-streaming's assignor looks global-table changelogs up under the default name
(``APP-TABLE-changelog``), so a table backed by an existing topic fails the group assignment
silently and the worker never starts; with that patched around, recovery reads only up to the
broker's high watermark, which tansu answers in batch counts rather than record offsets, and
the table held 3 of 20 entries and missed later writes.

For the same reason "caught up" is not decided by offsets: at start the store writes a
tombstone with a key of its own to every partition and is ready once it has read all of them
back, which proves every entry written before it started is in memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from riverbed.core.errors import RiverbedError
from riverbed.core.topology import REFERENCE_READER_PREFIX, reference_topic

log = logging.getLogger(__name__)
# Keys of the start-up markers; a NUL byte cannot start a key written through the API (UTF-8 of
# a URL path segment), and a tombstone of an absent key changes nothing in a compacted topic.
SYNC_PREFIX = b"\x00riverbed-sync:"


class ReferenceStoreFailed(RiverbedError):
    """The store did not catch up in time, or its consumer thread died; enriching on would
    silently produce nulls, so callers must stop (the agents worker crashes and restarts)."""


class ReferenceStore:
    """In-memory copies of reference tables; one per agents worker, thread-safe for lookups."""

    def __init__(self, bootstrap: str, tables: Iterable[str], poll_seconds: float = 0.1) -> None:
        self.bootstrap = bootstrap
        self.tables = frozenset(tables)
        self.poll_seconds = poll_seconds
        self._entries: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in self.tables}
        # This process's own writes the topic has not brought back yet:
        # (table, key) -> (partition, offset, entry or None for a tombstone).
        self._own: dict[tuple[str, str], tuple[int, int, dict[str, Any] | None]] = {}
        self._own_lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="reference-store", daemon=True)

    # ---- the agents' side ----------------------------------------------------------------------

    def start(self) -> None:
        if not self.tables:
            self._ready.set()
            return
        self._thread.start()

    def wait_ready(self, timeout: float) -> None:
        """Block until every entry written before :meth:`start` is loaded.

        Raises :class:`ReferenceStoreFailed` at the deadline or if the consumer thread died.
        """
        started = time.monotonic()
        if not self._ready.wait(timeout) or self._failure is not None:
            raise ReferenceStoreFailed(
                f"reference tables {sorted(self.tables)} not loaded within {timeout:.0f}s"
                + (f": {self._failure!r}" if self._failure else "")
            )
        sizes = ", ".join(f"{t}={len(self._entries[t])}" for t in sorted(self.tables))
        log.info("reference tables loaded in %.2fs: %s", time.monotonic() - started, sizes)

    @property
    def ready(self) -> bool:
        """Every entry written before :meth:`start` is loaded."""
        return self._ready.is_set() and self._failure is None

    def remember(
        self, table: str, key: str, entry: dict[str, Any] | None, partition: int, offset: int
    ) -> None:
        """What this process just wrote to ``ref.{table}`` (None: a tombstone) and where it
        landed, so that its own next read sees it without waiting for the topic to bring it
        back, and an older record the topic brings meanwhile (the write before it) does not
        hide it."""
        with self._own_lock:
            self._own[(table, key)] = (partition, offset, entry)

    def lookup(self, table: str, key: str) -> Mapping[str, Any] | None:
        """The entry of ``key`` in ``table``, or None; raises :class:`ReferenceStoreFailed`
        once the consumer thread has died (its copy would silently go stale)."""
        if self._failure is not None:
            raise ReferenceStoreFailed(f"reference store stopped: {self._failure!r}")
        with self._own_lock:
            own = self._own.get((table, key))
        if own is not None:
            return own[2]
        return self._entries.get(table, {}).get(key)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    # ---- the consumer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._follow()
        except BaseException as exc:
            log.exception("reference store consumer failed")
            self._failure = exc
            self._ready.set()  # wake wait_ready, which reports the failure

    def _follow(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                # assign() only, no commits: a fresh group id per reader
                "group.id": f"{REFERENCE_READER_PREFIX}{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
            }
        )
        try:
            partitions = self._partitions(consumer)
            consumer.assign(
                [
                    KafkaPartition(topic, partition, OFFSET_BEGINNING)
                    for topic, count in partitions.items()
                    for partition in range(count)
                ]
            )
            marker = SYNC_PREFIX + uuid.uuid4().hex.encode()
            pending = {(t, p) for t, count in partitions.items() for p in range(count)}
            self._write_markers(marker, pending)
            table_of = {reference_topic(t): t for t in self.tables}
            while not self._stop.is_set():
                for message in consumer.consume(1000, self.poll_seconds):
                    error = message.error()
                    if error is not None:
                        if error.fatal():
                            raise KafkaException(error)
                        log.warning("reference store: %s", error)
                        continue
                    key = message.key() or b""
                    if key.startswith(SYNC_PREFIX):
                        if key == marker and pending:
                            pending.discard((message.topic() or "", message.partition() or 0))
                            if not pending:
                                self._ready.set()
                        continue
                    self._apply(table_of[message.topic() or ""], key, message)
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer, timeout: float = 60.0) -> dict[str, int]:
        """Partition counts of the tables' topics, waiting for the API to create them."""
        wanted = {reference_topic(t) for t in self.tables}
        deadline = time.monotonic() + timeout
        while True:
            topics = consumer.list_topics(timeout=5).topics
            if wanted <= set(topics):
                return {t: len(topics[t].partitions) for t in sorted(wanted)}
            if time.monotonic() > deadline or self._stop.is_set():
                raise ReferenceStoreFailed(f"topics {sorted(wanted - set(topics))} do not exist")
            self._stop.wait(0.2)

    def _write_markers(self, marker: bytes, partitions: set[tuple[str, int]]) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        errors: list[str] = []
        for topic, partition in sorted(partitions):
            producer.produce(
                topic,
                None,
                marker,
                partition=partition,
                on_delivery=lambda err, _m: errors.append(err.str()) if err else None,
            )
        if producer.flush(30) or errors:
            raise ReferenceStoreFailed(f"start-up markers not acknowledged: {errors}")

    def _apply(self, table: str, key: bytes, message: Message) -> None:
        try:
            text = key.decode()
            self._caught_up(table, text, message.partition() or 0, message.offset() or 0)
            value = message.value()
            if value is None:
                self._entries[table].pop(text, None)
                return
            entry = json.loads(value)
        except (UnicodeDecodeError, ValueError) as exc:
            log.warning("ref.%s: skipping an undecodable entry %r: %s", table, key[:64], exc)
            return
        if not isinstance(entry, dict):
            log.warning("ref.%s: skipping entry %r: not a JSON object", table, text[:64])
            return
        self._entries[table][text] = entry

    def _caught_up(self, table: str, key: str, partition: int, offset: int) -> None:
        """Forget an own write once the topic has brought it (or a later record) back."""
        with self._own_lock:
            own = self._own.get((table, key))
            if own is not None and (partition, offset) >= own[:2]:
                del self._own[(table, key)]
