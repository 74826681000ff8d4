"""The circuit breaker: open on trouble, one probe after the cooldown, closed on success."""

from __future__ import annotations

from riverbed.core.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_open_breaker_lets_one_probe_through_after_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(cooldown=1.0, clock=clock)
    assert breaker.state == CLOSED
    breaker.open("all brokers down")
    assert breaker.state == OPEN and not breaker.try_probe()
    clock.now += 1.0
    assert breaker.state == HALF_OPEN
    assert breaker.try_probe()
    assert not breaker.try_probe()  # one probe at a time; the others still fail fast
    assert breaker.state == OPEN


def test_a_failed_probe_reopens_for_another_cooldown_and_a_success_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(cooldown=1.0, clock=clock)
    breaker.open("down")
    clock.now += 1.0
    assert breaker.try_probe()
    breaker.open("probe: timed out")
    assert breaker.state == OPEN and breaker.reason == "probe: timed out"
    clock.now += 0.5
    assert not breaker.try_probe()
    clock.now += 0.5
    assert breaker.try_probe()
    breaker.close()
    assert breaker.state == CLOSED and breaker.reason == ""


def test_reports_while_open_do_not_push_the_probe_back() -> None:
    clock = Clock()
    breaker = CircuitBreaker(cooldown=1.0, clock=clock)
    breaker.open("down")
    clock.now += 0.9
    breaker.open("still down")  # librdkafka repeats itself; the probe must still come
    clock.now += 0.1
    assert breaker.state == HALF_OPEN
