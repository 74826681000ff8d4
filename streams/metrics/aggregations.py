"""Aggregations as small classes: how one output value of a metric is computed over a window.

Each has an ``initial`` state, ``add`` one input to it, ``merge`` two states (when session
windows merge) and a ``result`` (None when the window had no input for it: the output is then
left out, as an average of nothing has no value). States are plain picklable values, because
they live in the flow's snapshots. Adding an aggregation means adding a class here and a name
in :data:`BY_OP`; the window logic does not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from ddsketch import DDSketch

SKETCH_RELATIVE_ACCURACY = 0.01  # percentiles are within 1 % of the true value


class Aggregator(Protocol):
    def initial(self) -> Any: ...

    def add(self, state: Any, value: Any) -> Any: ...

    def merge(self, left: Any, right: Any) -> Any: ...

    def result(self, state: Any) -> float | None: ...


class Count:
    """Events in the window (its input is the event itself, never null)."""

    def initial(self) -> int:
        return 0

    def add(self, state: int, value: Any) -> int:
        return state + 1

    def merge(self, left: int, right: int) -> int:
        return left + right

    def result(self, state: int) -> float:
        return float(state)


class Sum:
    """0 over no values: nothing sold is a sum of 0, not an unknown."""

    def initial(self) -> float:
        return 0.0

    def add(self, state: float, value: float) -> float:
        return state + value

    def merge(self, left: float, right: float) -> float:
        return left + right

    def result(self, state: float) -> float:
        return state


class Min:
    def initial(self) -> float:
        return math.inf

    def add(self, state: float, value: float) -> float:
        return value if value < state else state

    def merge(self, left: float, right: float) -> float:
        return min(left, right)

    def result(self, state: float) -> float | None:
        return None if state == math.inf else state


class Max:
    def initial(self) -> float:
        return -math.inf

    def add(self, state: float, value: float) -> float:
        return value if value > state else state

    def merge(self, left: float, right: float) -> float:
        return max(left, right)

    def result(self, state: float) -> float | None:
        return None if state == -math.inf else state


class Avg:
    """State ``(total, values)``."""

    def initial(self) -> tuple[float, int]:
        return 0.0, 0

    def add(self, state: tuple[float, int], value: float) -> tuple[float, int]:
        return state[0] + value, state[1] + 1

    def merge(self, left: tuple[float, int], right: tuple[float, int]) -> tuple[float, int]:
        return left[0] + right[0], left[1] + right[1]

    def result(self, state: tuple[float, int]) -> float | None:
        return state[0] / state[1] if state[1] else None


class CountDistinct:
    """Exact: a set of the values' 64-bit hashes (see ``steps.value_hash``)."""

    def initial(self) -> set[int]:
        return set()

    def add(self, state: set[int], value: int) -> set[int]:
        state.add(value)
        return state

    def merge(self, left: set[int], right: set[int]) -> set[int]:
        left |= right
        return left

    def result(self, state: set[int]) -> float:
        return float(len(state))


@dataclass(frozen=True)
class Quantile:
    """A DDSketch with 1 % relative accuracy; created on the first value."""

    quantile: float

    def initial(self) -> DDSketch | None:
        return None

    def add(self, state: DDSketch | None, value: float) -> DDSketch:
        if state is None:
            state = DDSketch(SKETCH_RELATIVE_ACCURACY)
        state.add(value)
        return state

    def merge(self, left: DDSketch | None, right: DDSketch | None) -> DDSketch | None:
        if left is None or right is None:
            return left if right is None else right
        left.merge(right)
        return left

    def result(self, state: DDSketch | None) -> float | None:
        if state is None:
            return None
        value = state.get_quantile_value(self.quantile)
        return None if value is None else float(value)


BY_OP: dict[str, Aggregator] = {
    "count": Count(),
    "sum": Sum(),
    "min": Min(),
    "max": Max(),
    "avg": Avg(),
    "count_distinct": CountDistinct(),
}


def aggregator(op: str, quantile: float | None = None) -> Aggregator:
    """The aggregator for a checked aggregation (``p99`` is a :class:`Quantile`)."""
    return Quantile(quantile) if quantile is not None else BY_OP[op]
