"""When to send at all: a circuit breaker over FCM's answers, and the one backoff formula.

In an FCM incident every push fails at once. Retrying each on its own timetable burns
every push's attempts in a storm of requests FCM is refusing anyway. The breaker watches
the latest answers; when most are transient refusals it opens, and the dispatcher sends
nothing until a delay has passed (exponential with jitter, never shorter than FCM's
Retry-After). Then it lets a small probe through (half-open): one answer that is not a
transient refusal closes it, a failed probe opens it again for longer.

Time comes from `clock` (seconds), so a test can live through a ten-minute outage at once.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from enum import StrEnum

from backend.push.outcomes import Outcome, OutcomeKind

WINDOW = 50  # the latest answers the breaker judges by
MIN_VOLUME = 10  # no verdict on fewer: a single device's quota must not stop everyone
FAILURE_RATIO = 0.5
PROBE_SIZE = 5  # pushes sent while half-open
BASE_SECONDS = 1.0
MAX_SECONDS = 30.0  # the longest pause between probes, unless FCM asks for more
JITTER = 0.1  # up to 10% more than FCM's Retry-After, so dispatchers do not return as one


def backoff_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = BASE_SECONDS,
    cap: float = MAX_SECONDS,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before attempt `attempt + 1` (1-based `attempt`).

    "Equal jitter": between half and all of `base * 2**(attempt-1)`, capped at `cap`;
    never less than `retry_after` (RFC 9110 §10.2.3), which gets up to JITTER on top.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    delay = ceiling / 2 + rng() * ceiling / 2
    if retry_after:
        delay = max(delay, retry_after * (1 + JITTER * rng()))
    return delay


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """Closed: send everything. Open: send nothing until `resume_at`. Half-open: a probe."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        rng: Callable[[], float] = random.random,
        max_seconds: float = MAX_SECONDS,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._max = max_seconds
        self._window: deque[bool] = deque(maxlen=WINDOW)  # True: a transient refusal
        self._state = State.CLOSED
        self._trips = 0
        self.resume_at = 0.0

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() >= self.resume_at:
            self._state = State.HALF_OPEN
        return self._state

    def allowance(self) -> int | None:
        """How many pushes may go now: None for no limit, 0 to wait, else a probe's size."""
        state = self.state
        if state is State.CLOSED:
            return None
        return PROBE_SIZE if state is State.HALF_OPEN else 0

    def wait_seconds(self) -> float:
        """How long until something may be sent (0 when it may now)."""
        return max(0.0, self.resume_at - self._clock()) if self.state is State.OPEN else 0.0

    def record(self, outcomes: Iterable[Outcome]) -> None:
        """Judge a chunk of answers: open, stay, or close."""
        outcomes = list(outcomes)
        refused = [o.kind is OutcomeKind.RETRY for o in outcomes]
        if not refused:
            return
        retry_after = max((o.retry_after or 0.0 for o in outcomes), default=0.0)
        if self.state is State.HALF_OPEN:
            if all(refused):
                self._open(retry_after)
            else:
                self._state, self._trips = State.CLOSED, 0
                self._window.clear()
            return
        self._window.extend(refused)
        if len(self._window) >= MIN_VOLUME and sum(self._window) >= FAILURE_RATIO * len(
            self._window
        ):
            self._open(retry_after)

    def _open(self, retry_after: float) -> None:
        self._trips += 1
        delay = backoff_delay(self._trips, retry_after or None, cap=self._max, rng=self._rng)
        self._state, self.resume_at = State.OPEN, self._clock() + delay
        self._window.clear()
