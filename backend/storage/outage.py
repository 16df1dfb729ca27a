"""A database outage, told apart from an IMAP failure, and logged as one event.

While the database is down every job fails the same way; logging each failure (with its
traceback) would flood the log, and counting it against a mailbox would mark healthy
mailboxes as errors. The sync worker and the push dispatcher ask `is_database_outage`,
record the outage here, and wait (the worker parks its mailboxes) until the database
answers again.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout


def is_database_outage(exc: BaseException) -> bool:
    """The database could not be reached or dropped us: nothing to do with the mail."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class DatabaseOutage:
    """Whether the database is down, with one log line when it goes and one when it is back."""

    def __init__(self, log: logging.Logger, paused: str) -> None:
        """`paused` says what waits meanwhile, in the log line ("sync paused")."""
        self._log = log
        self._paused = paused
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
        self._log.error(
            "database unavailable (%s); %s until it answers", type(exc).__name__, self._paused
        )

    def answered(self) -> bool:
        """Record a success; True if it ends an outage (logged once, with its length)."""
        with self._lock:
            since, self._since = self._since, None
        if since is None:
            return False
        self._log.warning(
            "database available again after %.1fs; catching up", time.monotonic() - since
        )
        return True
