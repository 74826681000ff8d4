"""Faust on aiokafka, asking the broker to answer a fetch within ``FETCH_MAX_WAIT_MS``.

Faust hard-codes aiokafka's ``fetch_max_wait_ms=1500``: a consumer that has caught up sends a
fetch the broker may hold that long before answering with what arrived meanwhile. Kafka answers
as soon as a byte arrives; tansu (the embedded broker) does not, and held each fetch for about
a third of the wait: with 1,500 ms that was 533 ms p50, 1.6 s p99 between an event's arrival and
the agents' clean copy (``bench.live_latency``'s breakdown), most of a dashboard's delay. The
librdkafka consumers of the flow and the sinks already wait at most 50 ms; the agents now match.
The cost is an empty fetch every 50 ms per idle consumer, which a broker does not notice.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

FETCH_MAX_WAIT_MS = 50


class FastFetchConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its fetcher when the consumer starts, after this returns.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class FastFetchConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return FastFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FastFetchTransport(driver.Transport):
    Consumer = FastFetchConsumer


class FastFetchApp(faust.App):
    """``faust.App`` whose consumer is :class:`FastFetchConsumer` (broker URLs as usual)."""

    def _new_transport(self) -> Any:
        return FastFetchTransport(self.conf.broker_consumer, self)
