"""Dead letters from synchronous code (sink threads): produced and flushed before returning."""

from __future__ import annotations

from confluent_kafka import Producer

from riverbed.core.errors import RiverbedError
from riverbed.core.topology import dlq_topic
from schemas import codec
from schemas.registry import SchemaRegistry
from schemas.stream_catalog import StreamCatalog
from schemas.system import dead_letter


class DeadLetterError(RiverbedError):
    """A dead letter was not acknowledged; the caller must not commit past its source."""


class DeadLetters:
    def __init__(
        self, producer: Producer, registry: SchemaRegistry, catalog: StreamCatalog
    ) -> None:
        self._producer = producer
        self._registry = registry
        self._catalog = catalog

    def send(
        self,
        stream: str,
        stage: str,
        error: str,
        original: bytes,
        key: bytes | None,
        event_id: str | None = None,
    ) -> None:
        datum = dead_letter(stream, stage, error, original, event_id)
        value = codec.encode(self._registry, self._catalog.ids(stream).dead_letter, datum)
        failures: list[str] = []
        self._producer.produce(
            dlq_topic(stream),
            value,
            key,
            on_delivery=lambda err, _m: failures.append(err.str()) if err else None,
        )
        if self._producer.flush(30) or failures:
            raise DeadLetterError(f"dead letter for {stream} not acknowledged: {failures}")
