"""The breaker and the backoff formula, on a clock of our own: no waiting, no network."""

from __future__ import annotations

import pytest

from backend.push.breaker import (
    MAX_SECONDS,
    MIN_VOLUME,
    PROBE_SIZE,
    Breaker,
    State,
    backoff_delay,
)
from backend.push.outcomes import Outcome

pytestmark = pytest.mark.unit

DOWN = Outcome.retry("UNAVAILABLE")
UP = Outcome.ok()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("rng", [0.0, 0.5, 0.999])
def test_the_backoff_grows_with_equal_jitter_up_to_its_cap(rng: float) -> None:
    delays = [backoff_delay(n, base=1.0, cap=8.0, rng=lambda: rng) for n in range(1, 7)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_the_backoff_never_undercuts_retry_after_and_jitters_above_it() -> None:
    assert backoff_delay(1, 20.0, rng=lambda: 0.0) == 20.0
    assert 20.0 < backoff_delay(1, 20.0, rng=lambda: 0.9) <= 22.0


def test_most_requests_failing_opens_the_breaker_until_its_delay_has_passed() -> None:
    clock = Clock()
    breaker = Breaker(clock, rng=lambda: 0.0)
    breaker.record([DOWN] * MIN_VOLUME)
    assert breaker.state is State.OPEN
    assert breaker.allowance() == 0
    assert breaker.wait_seconds() > 0
    clock.now = breaker.resume_at
    assert breaker.state is State.HALF_OPEN
    assert breaker.allowance() == PROBE_SIZE


def test_a_failed_probe_reopens_for_longer_and_a_good_one_closes() -> None:
    clock = Clock()
    breaker = Breaker(clock, rng=lambda: 0.0)
    breaker.record([DOWN] * MIN_VOLUME)
    first = breaker.resume_at - clock.now
    clock.now = breaker.resume_at
    breaker.record([DOWN] * PROBE_SIZE)
    assert breaker.state is State.OPEN
    assert breaker.resume_at - clock.now > first
    clock.now = breaker.resume_at
    breaker.record([DOWN, UP])
    assert breaker.state is State.CLOSED
    assert breaker.allowance() is None


def test_the_pause_honours_retry_after_and_is_capped_otherwise() -> None:
    clock = Clock()
    breaker = Breaker(clock, rng=lambda: 0.0)
    breaker.record([Outcome.retry("UNAVAILABLE", 120.0)] * MIN_VOLUME)
    assert breaker.wait_seconds() == 120.0
    for _ in range(20):
        clock.now = breaker.resume_at
        breaker.record([DOWN] * PROBE_SIZE)
    assert breaker.wait_seconds() <= MAX_SECONDS


def test_one_device_refused_among_many_accepted_does_not_stop_everyone() -> None:
    breaker = Breaker(Clock())
    for _ in range(20):
        breaker.record([DOWN] + [UP] * 9)
    assert breaker.state is State.CLOSED


def test_too_few_answers_give_no_verdict() -> None:
    breaker = Breaker(Clock())
    breaker.record([DOWN] * (MIN_VOLUME - 1))
    assert breaker.state is State.CLOSED
