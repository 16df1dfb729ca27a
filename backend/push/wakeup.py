"""Waking dispatchers the moment the outbox gains a row, instead of on their next poll.

On PostgreSQL, writers `NOTIFY` on commit (the notification is transactional, so it never
arrives before the row is visible) and each dispatcher `LISTEN`s on a connection of its
own. Polling stays underneath as the safety net: a notification lost with a broken
connection only delays a push by one poll. SQLite has no such channel and just polls.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

log = logging.getLogger("estafette.push")

CHANNEL = "estafette_outbox"
SQLITE_POLL_SECONDS = 0.05
LISTEN_POLL_SECONDS = 1.0


def notify(db: Session) -> None:
    """Ask for a wake-up when `db`'s transaction commits (PostgreSQL only).

    Once per transaction is enough (PostgreSQL folds repeats anyway): a sync batch of many
    new messages costs one NOTIFY round trip, not one each.
    """
    if db.get_bind().dialect.name != "postgresql":
        return
    transaction = db.get_transaction()
    if transaction is not None and db.info.get("outbox_notified") is transaction:
        return
    db.execute(text(f"NOTIFY {CHANNEL}"))
    db.info["outbox_notified"] = db.get_transaction()


class OutboxWakeup:
    """What an idle dispatcher waits on: a notification, a stop, or the poll interval."""

    def __init__(self, engine: Engine) -> None:
        self._url = engine.url
        self._listening = engine.dialect.name == "postgresql"
        self._conn: psycopg.Connection | None = None

    def wait(self, stop: threading.Event) -> None:
        if not self._listening:
            stop.wait(SQLITE_POLL_SECONDS)
            return
        try:
            conn = self._connection()
            # One notification is enough: the next claim takes everything that is due.
            for _ in conn.notifies(timeout=LISTEN_POLL_SECONDS, stop_after=1):
                pass
        except psycopg.Error as exc:
            log.warning("outbox notifications unavailable (%s); polling", type(exc).__name__)
            self.close()
            stop.wait(LISTEN_POLL_SECONDS)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conninfo = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
            self._conn.execute(f"LISTEN {CHANNEL}")
        return self._conn
