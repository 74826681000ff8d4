"""Routing rules and reference-table enrichment through the running pipeline.

The bundled catalog routes purchases with ``price * quantity > 100`` to ``purchases.large``
and enriches them with ``category`` and ``brand`` from the ``products`` reference table. Every
test uses products and users of its own, so its checks are exact in the shared pipeline.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from riverbed.core.topology import clean_topic
from tests.conftest import Pipeline, wait_until
from tests.helpers.topics import TopicReader

pytestmark = pytest.mark.integration
ROUTED = "purchases.large"
PROBLEM = "application/problem+json"


def purchase(
    user: str, product: str, price: float, quantity: int, ts: int | None = None
) -> dict[str, Any]:
    """A valid purchase; ``ts`` defaults to now."""
    return {
        "event_id": f"rt-{uuid.uuid4().hex}",
        "order_id": uuid.uuid4().hex[:10],
        "user_id": user,
        "product": product,
        "quantity": quantity,
        "price": price,
        "currency": "EUR",
        "ts": time.time_ns() // 1_000_000 if ts is None else ts,
    }


def post(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    response = client.post("/v1/streams/purchases/events", json=events)
    assert response.status_code == 202, response.text


def test_exactly_the_events_matching_a_rule_reach_its_topic_once(pipeline: Pipeline) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"  # one key: one partition, so order is kept end to end
    prices = [(10.0, 1), (50.5, 2), (100.0, 1), (34.0, 3), (99.0, 1), (250.0, 1), (25.0, 4)]
    events = [purchase(user, f"route-{i}", price, qty) for i, (price, qty) in enumerate(prices)]
    matching = {e["event_id"] for e in events if e["price"] * e["quantity"] > 100}
    assert 0 < len(matching) < len(events)
    # Posted after a retry of the whole batch: once it is routed, every earlier copy was seen.
    sentinel = purchase(user, "route-last", 500.0, 1)
    reader = TopicReader(
        pipeline,
        [clean_topic("purchases"), ROUTED],
        {e["event_id"] for e in [*events, sentinel]},
    )
    try:
        with pipeline.client() as client:
            post(client, events)
            post(client, events)  # a client retry: duplicates must not be routed again
            post(client, [sentinel])

        def routed_sentinel() -> bool:
            reader.poll()
            return sentinel["event_id"] in reader.ids(ROUTED)

        wait_until(routed_sentinel, 60, interval=0, message="the sentinel in purchases.large")
        reader.poll()
        assert reader.ids(ROUTED) == matching | {sentinel["event_id"]}
        assert reader.ids(clean_topic("purchases")) == {e["event_id"] for e in [*events, sentinel]}
        for event_id in matching:
            [(key, routed)] = reader.records[ROUTED][event_id]  # exactly one copy
            [(clean_key, clean)] = reader.records[clean_topic("purchases")][event_id]
            assert (key, routed) == (clean_key, clean)  # same key, same clean record
            assert routed["processed_at"] >= routed["ingested_at"]
    finally:
        reader.close()
    assert pipeline.crashes() == {}, pipeline.logs()


def test_events_carry_reference_attributes_and_later_events_see_an_update(
    pipeline: Pipeline,
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    known, unknown = f"prod-{uuid.uuid4().hex[:8]}", f"prod-{uuid.uuid4().hex[:8]}"
    posted: set[str] = set()
    reader = TopicReader(pipeline, [clean_topic("purchases")], posted)
    clean = clean_topic("purchases")

    def clean_records(client: httpx.Client, events: list[dict[str, Any]]) -> list[dict]:
        posted.update(e["event_id"] for e in events)
        post(client, events)

        def arrived() -> bool:
            reader.poll()
            return all(e["event_id"] in reader.ids(clean) for e in events)

        wait_until(arrived, 30, interval=0, message="the events in clean.purchases")
        return [reader.record(clean, e["event_id"]) for e in events]

    def attributes_reached_the_agents(client: httpx.Client, category: str) -> bool:
        """The store follows ref.products asynchronously: probe until an event shows it."""
        [record] = clean_records(client, [purchase(user, known, 1.0, 1)])
        return record["category"] == category

    try:
        with pipeline.client() as client:
            response = client.put(
                f"/v1/reference/products/{known}", json={"category": "books", "brand": "Acme"}
            )
            assert response.status_code == 200, response.text
            assert response.json()["attributes"] == {
                "category": "books",
                "brand": "Acme",
                "unit_cost": None,
            }
            wait_until(lambda: attributes_reached_the_agents(client, "books"), 30)

            before = clean_records(
                client,
                [purchase(user, known, 5.0, 1) for _ in range(5)]
                + [purchase(user, unknown, 5.0, 1)],
            )
            assert [(r["category"], r["brand"]) for r in before] == [("books", "Acme")] * 5 + [
                (None, None)
            ]

            response = client.put(f"/v1/reference/products/{known}", json={"category": "comics"})
            assert response.status_code == 200, response.text
            wait_until(lambda: attributes_reached_the_agents(client, "comics"), 30)

            after = clean_records(client, [purchase(user, known, 5.0, 1) for _ in range(5)])
            # A PUT replaces the entry: the brand it no longer names is null now.
            assert [(r["category"], r["brand"]) for r in after] == [("comics", None)] * 5
    finally:
        reader.close()
    assert pipeline.crashes() == {}, pipeline.logs()


def test_reference_writes_are_checked_against_the_declared_table(pipeline: Pipeline) -> None:
    with pipeline.client() as client:
        unknown = client.put("/v1/reference/nosuch/k1", json={"category": "x"})
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == PROBLEM
        assert "products" in unknown.json()["detail"]

        mistyped = client.put(
            "/v1/reference/products/k1", json={"category": 7, "colour": "red", "unit_cost": "4"}
        )
        assert mistyped.status_code == 422
        assert mistyped.headers["content-type"] == PROBLEM
        assert sorted(e["path"] for e in mistyped.json()["errors"]) == [
            "/category",
            "/colour",
            "/unit_cost",
        ]

        not_an_object = client.put("/v1/reference/products/k1", json=["books"])
        assert not_an_object.status_code == 422
        malformed = client.put(
            "/v1/reference/products/k1",
            content=b"{category",
            headers={"content-type": "application/json"},
        )
        assert malformed.status_code == 400
        control = client.put("/v1/reference/products/k%001", json={"category": "x"})
        assert control.status_code == 422
        assert control.json()["title"] == "Invalid key"
