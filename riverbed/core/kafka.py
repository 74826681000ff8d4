"""Kafka client edges shared by every process: configs, topic creation, an asyncio producer.

confluent-kafka is the client everywhere except inside Faust (which brings aiokafka): librdkafka
batches and compresses in C, which is where the ingest path's throughput comes from.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.core.breaker import CLOSED, CircuitBreaker
from riverbed.core.errors import Unavailable
from riverbed.core.settings import Settings

log = logging.getLogger(__name__)


class KafkaUnavailable(Unavailable):
    """The broker did not acknowledge in time; nothing after the first failure is confirmed."""

    title = "Broker unavailable"

    def __init__(self, detail: str = "", retry_after: int = 5) -> None:
        super().__init__(detail, retry_after)


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Idempotent, acks=all: an acknowledged event is durably in Kafka, exactly once."""
    return {
        "bootstrap.servers": settings.require_kafka(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.producer_linger_ms,
        "message.timeout.ms": settings.producer_timeout_ms,
        "compression.type": settings.kafka_compression,
        **extra,
    }


def consumer_config(settings: Settings, group_id: str, **extra: Any) -> dict[str, Any]:
    """Manual commits only: offsets move after the sink or agent has finished with a batch."""
    return {
        "bootstrap.servers": settings.require_kafka(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.kafka_session_timeout_ms // 6),
        "fetch.wait.max.ms": 50,
        "topic.metadata.refresh.interval.ms": 5000,
        **extra,
    }


def ensure_topics(
    settings: Settings,
    topics: Iterable[str],
    timeout: float = 30.0,
    configs: dict[str, dict[str, str]] | None = None,
) -> None:
    """Create missing topics and wait until the broker lists them all (idempotent)."""
    admin = AdminClient({"bootstrap.servers": settings.require_kafka()})
    wanted = set(topics)
    deadline = time.monotonic() + timeout
    while True:
        try:
            existing = set(admin.list_topics(timeout=5).topics)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"cannot list topics: {exc}") from exc
            continue
        missing = wanted - existing
        if not missing:
            return
        futures = admin.create_topics(
            [
                NewTopic(t, settings.topic_partitions, 1, config=(configs or {}).get(t, {}))
                for t in sorted(missing)
            ]
        )
        for topic, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            log.info("created topic %s", topic)
        if time.monotonic() > deadline:
            raise KafkaUnavailable(f"topics {sorted(missing)} did not appear within {timeout}s")


@dataclass(frozen=True)
class OutgoingRecord:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (compacted topics)


@dataclass(frozen=True)
class Delivery:
    """The broker's answer for one record: an error, or where it was written."""

    error: str | None
    topic: str
    partition: int = -1
    offset: int = -1


class _Batch:
    """Counts down deliveries from librdkafka's thread, resolves once on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[list[Delivery]] = loop.create_future()
        self.deliveries: list[Delivery | None] = [None] * size
        self.remaining = size
        self.lock = threading.Lock()

    def delivered(self, index: int, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            delivery = Delivery(error.str(), message.topic() or "")
        else:
            delivery = Delivery(None, message.topic() or "", message.partition(), message.offset())
        with self.lock:
            self.deliveries[index] = delivery
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result([d for d in self.deliveries if d is not None])


class CircuitOpen(KafkaUnavailable):
    """The broker is known to be down: nothing was sent, the caller answers at once."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(f"the broker is unreachable ({reason}); nothing was sent", retry_after)


class AsyncProducer:
    """confluent-kafka producer for asyncio code: a thread serves delivery callbacks.

    With a :class:`CircuitBreaker`, a broker that librdkafka reports down (all brokers down,
    or a failed delivery) makes ``produce`` raise :class:`CircuitOpen` at once instead of
    waiting out ``message.timeout.ms`` per call; a cheap metadata probe, one at a time after
    the cooldown, closes the breaker when the broker answers again.
    """

    def __init__(self, config: dict[str, Any], breaker: CircuitBreaker | None = None) -> None:
        self.breaker = breaker
        if breaker is not None:
            config = {**config, "error_cb": self._on_error}
        self._producer = Producer(config)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-producer-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def produce(self, records: Sequence[OutgoingRecord]) -> list[str | None]:
        """Produce all records; return one error string (or None) per record once each is acked.

        Raises :class:`CircuitOpen` when the breaker says the broker is down."""
        return [delivery.error for delivery in await self.deliver(records)]

    async def deliver(self, records: Sequence[OutgoingRecord]) -> list[Delivery]:
        """:meth:`produce`, answering where each record was written (partition and offset)."""
        if not records:
            return []
        await self._admit()
        batch = _Batch(asyncio.get_running_loop(), len(records))
        for index, record in enumerate(records):
            self._produce_one(record, lambda err, msg, i=index: batch.delivered(i, err, msg))
        deliveries = await batch.future
        if self.breaker is not None:
            failed = next((d.error for d in deliveries if d.error), None)
            if failed is None:
                self.breaker.close()
            else:
                self.breaker.open(failed)
        return deliveries

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (its poll thread): all brokers down opens the breaker."""
        if self.breaker is not None and error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.breaker.open(error.str())

    async def _admit(self) -> None:
        breaker = self.breaker
        if breaker is None or breaker.state == CLOSED:
            return
        if not breaker.try_probe():
            raise CircuitOpen(breaker.reason, max(1, round(breaker.cooldown)))
        try:
            await asyncio.to_thread(self._producer.list_topics, timeout=1.0)
        except KafkaException as exc:
            breaker.open(f"probe: {exc}")
            raise CircuitOpen(breaker.reason, max(1, round(breaker.cooldown))) from None
        breaker.close()

    def _produce_one(self, record: OutgoingRecord, callback: Any) -> None:
        while True:
            try:
                self._producer.produce(record.topic, record.value, record.key, on_delivery=callback)
                return
            except BufferError:
                # Local queue full: wait for deliveries to drain it rather than failing the caller.
                self._producer.poll(0.01)

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join(timeout=2)
