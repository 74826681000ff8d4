"""One table of components drives `riverbed up`, `riverbed run`, the drain and k8s/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from riverbed.cli import build_parser
from riverbed.components import COMPONENTS, NAMES, component, instances
from riverbed.core import topology
from riverbed.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_component_has_a_k8s_deployment_and_every_deployment_a_component() -> None:
    runs = set()
    for manifest in (ROOT / "k8s").glob("*.yaml"):
        runs |= set(re.findall(r'args: \["run", "([a-z-]+)"\]', manifest.read_text()))
    assert runs == set(NAMES)


def test_riverbed_run_accepts_exactly_the_components() -> None:
    parser = build_parser()
    for name in NAMES:
        assert parser.parse_args(["run", name]).component == name
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "sink-nowhere"])


def test_every_entry_point_resolves_to_a_function() -> None:
    for row in COMPONENTS:
        assert callable(row.load()), row.entry


def test_up_starts_agent_replicas_and_the_clickhouse_sink_whatever_the_clickhouse() -> None:
    for url in (None, "http://clickhouse:8123"):
        assert instances(Settings(agent_workers=2, clickhouse_url=url)) == [
            ("api", 0),
            ("sql", 0),
            ("agents", 0),
            ("agents", 1),
            ("flow", 0),
            ("sink-redis", 0),
            ("sink-clickhouse", 0),
        ]


def test_an_unknown_component_is_named_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="sink-redis"):
        component("sink-nowhere")


def _subscribed(subscriptions: tuple[str, ...], streams: list[str]) -> set[str]:
    """The concrete topics a subscription list (names and ^regexes) reads for these streams."""
    candidates = [t for s in streams for t in topology.stream_topics(s)]
    topics = set()
    for entry in subscriptions:
        if entry.startswith("^"):
            topics |= {t for t in candidates if re.match(entry, t)}
        else:
            topics.add(entry)
    return topics


def test_the_drain_waits_on_every_topic_each_sink_reads() -> None:
    streams = ["pageviews", "purchases"]
    groups = topology.group_topics(streams)
    assert set(groups[topology.CLICKHOUSE_SINK_GROUP]) == _subscribed(
        topology.CLICKHOUSE_SINK_TOPICS, streams
    )
    assert set(groups[topology.REDIS_SINK_GROUP]) == _subscribed(
        topology.REDIS_SINK_TOPICS, streams
    )
    assert topology.METRIC_RESULTS_TOPIC in groups[topology.CLICKHOUSE_SINK_GROUP]
    assert set(groups[topology.AGENTS_GROUP]) == {"events.pageviews", "events.purchases"}


def test_every_committing_component_drains() -> None:
    groups = topology.group_topics(["pageviews"])
    assert {row.group for row in COMPONENTS if row.group} == set(groups)
