"""The sync process's one entry point, for `flask sync` and the embedded `serve`.

Front ends start mail sync through this function and nothing else: the worker's classes
stay the sync package's own (tests/architecture/test_import_boundaries.py).
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session, sessionmaker

from backend.config import Settings


def run_sync(
    sessions: sessionmaker[Session],
    settings: Settings,
    stop: threading.Event,
    *,
    pool_size: int = 16,
    max_mailboxes: int = 100_000,
) -> None:
    """Hold leased mailboxes in IDLE until `stop` is set."""
    from backend.sync.worker import SyncWorker  # the IMAP stack loads only where it runs

    SyncWorker(sessions, settings, pool_size=pool_size, max_mailboxes=max_mailboxes).run(stop)
