"""Process liveness on PostgreSQL: a claim dies with the session of the process that made it.

A push dispatcher or a sync worker holds, on a connection of its own, a session-level
advisory lock named after it (`pg_advisory_lock(LIVENESS_SPACE, hashtext(holder))`).
PostgreSQL drops the lock the moment that session ends (process killed, host gone,
connection cut), so the others see at once that its claims are orphaned (`orphaned`)
instead of waiting out a time lease. The time lease stays as the fallback, for a process
alive but hung, and for SQLite, which has no sessions to watch.

A hash collision between two holders' names (32 bits) can only make a dead holder look
alive, so the time lease decides: never two live owners.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    cast,
    column,
    event,
    func,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

log = logging.getLogger("estafette.liveness")

LIVENESS_SPACE = 0x45535446  # "ESTF": the advisory-lock class id that names our locks
CHECK_SECONDS = 5.0  # how often a holder makes sure its session is still there

_PG_LOCKS = table(
    "pg_locks", column("locktype"), column("classid"), column("objid"), column("objsubid")
)
# The holders alive now: the second key of our two-key advisory locks (objsubid 2).
_LIVE_HOLDERS = select(cast(_PG_LOCKS.c.objid, Integer)).where(
    _PG_LOCKS.c.locktype == "advisory",
    _PG_LOCKS.c.classid == literal_column(str(LIVENESS_SPACE)),
    _PG_LOCKS.c.objsubid == literal_column("2"),
)


class Liveness:
    """One holder's advisory lock on a connection kept out of the pool."""

    def __init__(self, engine: Engine, holder: str) -> None:
        self._engine = engine
        self.holder = holder
        self._conn: Connection | None = None
        self._checked_at = -float("inf")

    def ensure(self) -> None:
        """Hold the lock; after a lost session, take it again on a new one.

        Checked at most every CHECK_SECONDS: a claim costs no extra round trip.
        """
        if self._conn is not None and time.monotonic() - self._checked_at < CHECK_SECONDS:
            return
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._checked_at = time.monotonic()
                return
            except DBAPIError:
                log.warning("liveness session lost; taking the lock again")
                self._drop()
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        conn.detach()  # closing it must end the session, not return it to the pool
        taken = conn.scalar(
            text("SELECT pg_try_advisory_lock(:space, hashtext(:holder))"),
            {"space": LIVENESS_SPACE, "holder": self.holder},
        )
        if not taken:
            conn.close()
            raise RuntimeError("another live process holds this liveness name")
        self._conn, self._checked_at = conn, time.monotonic()

    def close(self) -> None:
        """End the session, and with it the lock: our claims are free at once.

        The unlock is explicit because a closing session lets go of its locks only after
        close() has returned; a successor must find them free."""
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                self._conn.close()
            self._conn = None


_held: dict[tuple[int, str], Liveness] = {}
_guard = threading.Lock()


def hold(engine: Engine, holder: str) -> None:
    """Prove `holder` alive for as long as this process keeps its session (no-op on SQLite)."""
    if engine.dialect.name != "postgresql":
        return
    with _guard:
        liveness = _held.get((id(engine), holder))
        if liveness is None:
            liveness = _held[(id(engine), holder)] = Liveness(engine, holder)
            if not event.contains(engine, "engine_disposed", _let_go_of_engine):
                event.listen(engine, "engine_disposed", _let_go_of_engine)
        liveness.ensure()


def let_go(engine: Engine, holder: str) -> None:
    """A holder stopping cleanly ends its session, so its leftover claims are free at once."""
    with _guard:
        liveness = _held.pop((id(engine), holder), None)
    if liveness is not None:
        liveness.close()


def orphaned(holder: ColumnElement[str | None]) -> ColumnElement[bool]:
    """SQL (PostgreSQL only): `holder` names a process whose session has ended."""
    return holder.is_not(None) & func.hashtext(holder).not_in(_LIVE_HOLDERS)


def _let_go_of_engine(engine: Engine) -> None:
    """A disposed engine (tests, shutdown) takes its holders' sessions with it."""
    with _guard:
        mine = [key for key in _held if key[0] == id(engine)]
        doomed = [_held.pop(key) for key in mine]
    for liveness in doomed:
        liveness.close()
