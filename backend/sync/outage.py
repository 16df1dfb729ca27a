"""A database outage, told apart from an IMAP failure, and logged as one event.

While the database is down every job fails the same way; logging each failure (with its
traceback) would flood the log, and counting it against the mailbox would mark healthy
mailboxes as errors. The worker asks `is_database_outage`, records the outage here, and
parks the mailbox until the database answers again.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("estafette.sync")


def is_database_outage(exc: BaseException) -> bool:
    """The database could not be reached or dropped us: nothing to do with the mail."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class DatabaseOutage:
    """Whether the database is down, with one log line when it goes and one when it is back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """Record a failure; only the first of an outage is logged (type only: no values)."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        log.error("database unavailable (%s); sync paused until it answers", type(exc).__name__)

    def answered(self) -> bool:
        """Record a success; True if it ends an outage (logged once, with its length)."""
        with self._lock:
            since, self._since = self._since, None
        if since is None:
            return False
        log.warning("database available again after %.1fs; catching up", time.monotonic() - since)
        return True
