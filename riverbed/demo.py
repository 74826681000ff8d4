"""Realistic sample traffic for ``riverbed up --demo``: page views and purchases over HTTP.

It posts through the public API like any producer would, so the demo exercises the whole path
(validation, Kafka, agents, windows, sinks, SSE).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import httpx

PAGES = ["/", "/pricing", "/docs", "/blog/streaming-joins", "/signup", "/checkout", "/product/42"]
PAGE_WEIGHTS = [30, 10, 15, 8, 5, 4, 12]
REFERRERS = [None, "https://news.example", "https://search.example", "https://social.example"]
COUNTRIES = ["DE", "FR", "US", "GB", "NL", "ES", None]
PRODUCTS = {"notebook": 4.5, "pen": 1.2, "backpack": 39.0, "headphones": 79.0, "mug": 9.5}
# The products reference table (schemas/streams.toml), so demo purchases come out enriched.
PRODUCT_DETAILS = {
    "notebook": {"category": "stationery", "brand": "Leaf", "unit_cost": 1.9},
    "pen": {"category": "stationery", "brand": "Inkwell", "unit_cost": 0.3},
    "backpack": {"category": "bags", "brand": "Trail", "unit_cost": 17.0},
    "headphones": {"category": "audio", "brand": "Hush", "unit_cost": 31.5},
}  # no "mug": its purchases show what an event without an entry looks like (nulls)


# Written to the data dir's metrics.yaml by `riverbed up --demo` when there is none, so the demo
# shows declared metrics too; edit the file and the flow follows within seconds.
DEMO_METRICS = """\
# Declared metrics (docs/metrics.md). Edit and save: the API applies changes within seconds.
metrics:
  - name: page_latency
    stream: pageviews
    aggregations: [count, avg(load_ms), p50(load_ms), p99(load_ms), count_distinct(user_id)]
    group_by: [page]
    window: {type: tumbling, size: 1m}
  - name: revenue_by_category
    stream: purchases
    aggregations: [count, sum(price), max(price)]
    group_by: [category]
    filter: "currency == 'EUR'"
    window: {type: hopping, size: 5m, step: 1m}
  - name: shopping_sessions
    stream: purchases
    aggregations: [count, sum(price)]
    group_by: [user_id]
    window: {type: session, gap: 30s}
"""


def page_view(rng: random.Random, now_ms: int) -> dict[str, Any]:
    return {
        "user_id": f"u{rng.randint(1, 500)}",
        "page": rng.choices(PAGES, PAGE_WEIGHTS)[0],
        "referrer": rng.choice(REFERRERS),
        "country": rng.choice(COUNTRIES),
        "load_ms": round(rng.lognormvariate(5.5, 0.5), 1),
        "ts": now_ms - rng.randint(0, 1500),
    }


def purchase(rng: random.Random, now_ms: int) -> dict[str, Any]:
    product = rng.choice(list(PRODUCTS))
    return {
        "event_id": uuid.uuid4().hex,
        "order_id": f"o{rng.randint(1, 10**9)}",
        "user_id": f"u{rng.randint(1, 500)}",
        "product": product,
        "quantity": rng.choice([1, 1, 1, 2, 3]),
        "price": PRODUCTS[product],
        "currency": rng.choice(["EUR", "EUR", "USD", "GBP"]),
        "ts": now_ms - rng.randint(0, 1500),
    }


class DemoTraffic:
    """Posts ``rate`` events per second (about one purchase per ten page views) until stopped."""

    def __init__(
        self, base_url: str, key: str, rate: float = 50.0, seed: int | None = None
    ) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {key}"}
        self.rate = rate
        self.rng = random.Random(seed)
        self.sent = 0
        self.failures = 0
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=15) as client:
            for product, details in PRODUCT_DETAILS.items():
                try:
                    client.put(f"/v1/reference/products/{product}", json=details).raise_for_status()
                except httpx.HTTPError:
                    self.failures += 1
            while not self._stop.is_set():
                now = time.time_ns() // 1_000_000
                views = [page_view(self.rng, now) for _ in range(max(1, int(self.rate * 0.9 / 4)))]
                buys = [purchase(self.rng, now) for _ in range(max(1, int(self.rate * 0.1 / 4)))]
                for stream, events in (("pageviews", views), ("purchases", buys)):
                    try:
                        response = client.post(f"/v1/streams/{stream}/events", json=events)
                        response.raise_for_status()
                        self.sent += len(events)
                    except httpx.HTTPError:
                        self.failures += 1
                self._stop.wait(0.25)
