"""Every name two processes share: Kafka topics and patterns, consumer groups and what they read,
Redis keys and channels, ClickHouse tables.

Names only, like ``starlette.status``: no clients, no I/O, no imports from the rest of Riverbed.
A writer and its readers run in different processes (often different pods), so a name spelt in
two places drifts; here it is spelt once and everyone imports it. Renaming anything here breaks
existing deployments' data: add the new name beside the old one and note it in CHANGELOG.
"""

from __future__ import annotations

from collections.abc import Iterable

# --- Kafka topics ------------------------------------------------------------------------------

EVENTS_PREFIX = "events."  # accepted events, as posted (Avro, Confluent wire format)
CLEAN_PREFIX = "clean."  # validated, enriched, deduplicated by the agents
DLQ_PREFIX = "dlq."  # dead letters of every stage of one stream
REFERENCE_PREFIX = "ref."  # compacted reference tables the agents enrich from
METRICS_TOPIC = "metrics"  # built-in window aggregates from the flow
METRIC_RESULTS_TOPIC = "metric_results"  # declared metrics' windows from the flow
SCHEMAS_TOPIC = "_schemas"  # the schema registry's compacted log
AUDIT_TOPIC = "audit"  # security-relevant actions, written by the API

#: Regex subscriptions, so topics of streams created at run time are picked up on their own.
CLEAN_PATTERN = r"^clean\..+"
DLQ_PATTERN = r"^dlq\..+"

#: A routing rule may not send events into a topic Riverbed owns.
# Created once the ingest journal was replayed into a broker: missing, the broker is new.
JOURNAL_MARKER_TOPIC = "_riverbed_journal"
RESERVED_TOPIC_PREFIXES = (EVENTS_PREFIX, CLEAN_PREFIX, DLQ_PREFIX, REFERENCE_PREFIX, "_", "__")
RESERVED_TOPICS = frozenset({METRICS_TOPIC, METRIC_RESULTS_TOPIC, AUDIT_TOPIC})


def events_topic(stream: str) -> str:
    return f"{EVENTS_PREFIX}{stream}"


def clean_topic(stream: str) -> str:
    return f"{CLEAN_PREFIX}{stream}"


def dlq_topic(stream: str) -> str:
    return f"{DLQ_PREFIX}{stream}"


def reference_topic(table: str) -> str:
    return f"{REFERENCE_PREFIX}{table}"


def stream_of_topic(topic: str) -> str:
    """``clean.pageviews`` -> ``pageviews``."""
    return topic.split(".", 1)[1]


def stream_topics(stream: str) -> tuple[str, str, str]:
    """The three topics every stream owns, in pipeline order."""
    return events_topic(stream), clean_topic(stream), dlq_topic(stream)


# --- Consumer groups ---------------------------------------------------------------------------

AGENTS_GROUP = "riverbed-agents"  # also the Faust app id
CLICKHOUSE_SINK_GROUP = "riverbed-sink-clickhouse"
REDIS_SINK_GROUP = "riverbed-sink-redis"
REGISTRY_READER_GROUP = "riverbed-registry"  # assign() only: reads _schemas, never commits
REFERENCE_READER_PREFIX = "riverbed-reference-"  # + a random suffix; assign() only

CLICKHOUSE_SINK_TOPICS = (
    CLEAN_PATTERN,
    DLQ_PATTERN,
    METRICS_TOPIC,
    METRIC_RESULTS_TOPIC,
    AUDIT_TOPIC,
)
REDIS_SINK_TOPICS = (METRICS_TOPIC, METRIC_RESULTS_TOPIC)


def group_topics(streams: Iterable[str]) -> dict[str, list[str]]:
    """Each committing consumer group with the concrete topics it reads, for these streams.

    What a drain waits on: when every group here has committed to the end of these topics,
    everything accepted has been processed and stored. The flow is absent on purpose: it
    commits through its recovery snapshots, and its output lands in topics the sinks read.
    """
    names = sorted(streams)
    return {
        AGENTS_GROUP: [events_topic(s) for s in names],
        CLICKHOUSE_SINK_GROUP: [clean_topic(s) for s in names]
        + [dlq_topic(s) for s in names]
        + [METRICS_TOPIC, METRIC_RESULTS_TOPIC, AUDIT_TOPIC],
        REDIS_SINK_GROUP: list(REDIS_SINK_TOPICS),
    }


# --- Redis keys and channels -------------------------------------------------------------------

# The stream catalog (schemas.stream_catalog): the one source every process follows.
STREAMS_KEY = "riverbed:streams"  # hash: stream -> spec JSON
STREAM_IDS_KEY = "riverbed:streams:ids"  # hash: stream -> the schema ids it writes with
STREAM_SEEDED_KEY = "riverbed:streams:seeded"  # hash: stream -> fingerprint of its file entry
STREAMS_VERSION_KEY = "riverbed:streams:version"  # counter, bumped on every change
STREAMS_CLOSING_KEY = "riverbed:streams:closing"  # set: streams being deleted (no intake)
STREAMS_RETIRED_KEY = "riverbed:streams:retired"  # set: deleted streams (their topics stay)

# Declared metrics (streams.metrics.store).
METRIC_DEFS_KEY = "riverbed:metrics:defs"
METRICS_VERSION_KEY = "riverbed:metrics:version"
METRICS_APPLIED_KEY = "riverbed:metrics:applied"  # the version the flow computes

REGISTRY_PREFIX = "riverbed:registry"  # the schema registry's own keys live under this
HEARTBEAT_PREFIX = "riverbed:heartbeat"  # + ":{component}:{host}:{pid}", with a TTL
ENGINES_KEY = "riverbed:engines"  # hash: embedded engine -> JSON of its restarts (/readyz)

# Live logs: Redis Streams the API's live hub serves (api.live.hub), one per channel; each
# entry is one JSON message (riverbed.core.live_log).
LIVE_CHANNEL = "riverbed:live:metrics"  # every applied built-in metric update (Redis sink)
RESULTS_CHANNEL = "riverbed:live:metric_results"  # every applied declared-metric update
TAIL_CHANNEL = "riverbed:live:tail"  # a sample of processed events (the agents)
ALERTS_CHANNEL = "riverbed:live:alerts"  # alerts as they fire and resolve
STATUS_CHANNEL = "riverbed:live:status"  # processes starting, stopping, crashing; engines


def stats_key(stream: str) -> str:
    """Hash of the agents' counters (processed, duplicates, dead_letters, routed) per stream."""
    return f"riverbed:stats:{stream}"


def dedup_key(stream: str, event_id: str) -> str:
    """One key per seen event id, expiring after the dedup horizon."""
    return f"riverbed:dedup:{stream}:{event_id}"


def latest_key(stream: str) -> str:
    """Hash of a stream's newest built-in window values."""
    return f"riverbed:latest:{stream}"


def series_key(stream: str, field: str, group: str) -> str:
    """Recent windows of one built-in value."""
    return f"riverbed:series:{stream}:{field}:{group}"


def results_latest_key(metric: str) -> str:
    """Hash of a declared metric's newest window per group."""
    return f"riverbed:mlatest:{metric}"


def results_series_key(metric: str, group_key: str) -> str:
    """Recent windows of one declared metric's group."""
    return f"riverbed:mseries:{metric}:{group_key}"


def replayed_key(stream: str) -> str:
    """Set of the dead-letter ids already replayed."""
    return f"riverbed:dlq:replayed:{stream}"


# --- ClickHouse tables (in the database named by settings.clickhouse_database) ---------------

METRICS_TABLE = METRICS_TOPIC
METRIC_RESULTS_TABLE = METRIC_RESULTS_TOPIC
AUDIT_TABLE = AUDIT_TOPIC
DEAD_LETTERS_TABLE = "dead_letters"


def events_table(stream: str) -> str:
    return f"events_{stream}"
