"""The consume -> write -> commit loop every sink shares.

Offsets are committed only after the writer returned, so a crash between the two re-delivers
the batch; writers are idempotent (ReplacingMergeTree, versioned Redis upserts) so that costs
nothing but time. A failing writer is retried with backoff on the *same* batch, holding the
partition rather than skipping data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

log = logging.getLogger(__name__)


class BatchWriter(Protocol):
    name: str

    def write(self, messages: Sequence[Message]) -> None:
        """Write durably or raise; called again with the same batch after a failure."""


def commit_positions(messages: Sequence[Message]) -> list[TopicPartition]:
    """The next offset to read for every partition the batch touched."""
    latest: dict[tuple[str, int], int] = {}
    for m in messages:
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        assert topic is not None and partition is not None and offset is not None
        key = (topic, partition)
        latest[key] = max(latest.get(key, -1), offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in latest.items()]


class SinkRunner:
    """Runs one writer over a set of topics until :meth:`stop`; meant for a thread of its own."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        writer: BatchWriter,
        batch_size: int,
        batch_timeout: float,
        eager: bool = False,
    ) -> None:
        self.config = config
        self.topics = topics
        self.writer = writer
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.eager = eager
        self._stop = threading.Event()
        self.written = 0
        self.last_error: str | None = None
        self.healthy = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        consumer = Consumer(self.config)
        consumer.subscribe(self.topics)
        try:
            while not self._stop.is_set():
                batch = self._next_batch(consumer)
                if not batch:
                    self.healthy.set()
                    continue
                if not self._write_with_retry(batch):
                    break  # stopping mid-retry: the batch stays uncommitted and is re-read later
                consumer.commit(offsets=commit_positions(batch), asynchronous=False)
                self.written += len(batch)
        finally:
            consumer.close()

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        """Up to ``batch_size`` records. librdkafka's ``consume`` waits out its timeout unless
        the batch fills; an eager runner (live values) instead waits for the first record only
        and takes what else has already arrived, so a quiet moment adds no latency and a busy
        one still batches."""
        if self.eager:
            first = consumer.poll(self.batch_timeout)
            if first is None:
                return []
            rest = consumer.consume(self.batch_size - 1, 0) if self.batch_size > 1 else []
            messages = [first, *rest]
        else:
            messages = consumer.consume(self.batch_size, self.batch_timeout)
        batch = []
        for m in messages:
            error = m.error()
            if error is None:
                batch.append(m)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("%s: consumer error %s", self.writer.name, error)
        return batch

    def _write_with_retry(self, batch: list[Message]) -> bool:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self.writer.write(batch)
                self.last_error = None
                self.healthy.set()
                return True
            except Exception as exc:  # any failure: keep the batch, back off, try again
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.healthy.clear()
                log.error(
                    "%s: write of %d records failed, retrying in %.1fs: %s",
                    self.writer.name,
                    len(batch),
                    delay,
                    exc,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return False
