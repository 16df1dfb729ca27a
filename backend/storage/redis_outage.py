"""Whether Redis is usable, for the stores that fall back to the database while it is away.

An outage is logged once when it starts and once when it ends, never per request; while it
lasts, Redis is tried again every REDIS_RETRY_SECONDS, not on every call.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("estafette.redis")

REDIS_RETRY_SECONDS = 5.0


class RedisOutage:
    """One per store: `what` names what the database stands in for, in the two log lines."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._down_since: float | None = None
        self._lock = threading.Lock()

    def usable(self) -> bool:
        down = self._down_since
        return down is None or time.monotonic() - down > REDIS_RETRY_SECONDS

    def failed(self) -> None:
        with self._lock:
            if self._down_since is None:
                log.warning("Redis unreachable: %s in the database", self._what)
            self._down_since = time.monotonic()

    def answered(self) -> None:
        with self._lock:
            if self._down_since is not None:
                log.warning("Redis is back: %s in Redis again", self._what)
            self._down_since = None
