"""Graceful shutdown: let the pipeline finish what it accepted before the processes stop.

The embedded broker keeps topics in memory, so anything still in flight when it stops is gone.
``riverbed up`` therefore closes ingest first, waits until every consumer group has committed
up to the end of its topics, and only then stops the processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


def pending_records(bootstrap: str, group: str, topics: list[str], probe: float = 1.0) -> int:
    """How many records (at least) ``group`` has not committed yet in ``topics``.

    Measured by reading from the group's committed offsets rather than from ListOffsets
    watermarks, which the embedded tansu broker reports per batch, not per record.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{group}-drain-probe",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )
    owner = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        metadata = owner.list_topics(timeout=5).topics
        partitions = [
            TopicPartition(t, p) for t in topics if t in metadata for p in metadata[t].partitions
        ]
        if not partitions:
            return 0
        committed = owner.committed(partitions, timeout=5)
        consumer.assign(
            [
                TopicPartition(
                    tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                )
                for tp in committed
            ]
        )
        return sum(1 for m in consumer.consume(10_000, probe) if m.error() is None)
    finally:
        owner.close()
        consumer.close()


def drain(
    bootstrap: str,
    groups: dict[str, list[str]],
    timeout: float,
    report: Callable[[str], None],
    settle: float = 2.0,
    abort: threading.Event | None = None,
) -> bool:
    """Wait until every group's lag is zero and stays zero for ``settle`` seconds.

    Settling matters because a stage that just caught up may still produce into the next
    stage's topics (the flow flushes running windows every second). Returns False at the
    deadline, after reporting what is left.
    """
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    lags: dict[str, int] = {}
    while time.monotonic() < deadline:
        if abort is not None and abort.is_set():
            report("! drain skipped on request; in-flight records may be lost")
            return False
        lags = {
            group: pending_records(bootstrap, group, topics) for group, topics in groups.items()
        }
        if any(lags.values()):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            return True
        time.sleep(0.25)
    left = ", ".join(f"{group}: {lag}" for group, lag in lags.items() if lag)
    report(f"! drain timed out after {timeout:.0f}s; records not yet processed (at least): {left}")
    return False
