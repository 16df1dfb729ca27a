"""Rate-limit counters for flask-limiter, kept where every api process sees them.

The `limits` library owns the algorithm (fixed windows); this module only gives it a
storage: the database when there is no Redis, and Redis with the database standing in
while Redis is away, so a Redis outage never turns sign-in into a 500.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

import redis
from limits.storage import RedisStorage, Storage
from sqlalchemy import Engine, case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from backend.storage.models import RateLimitCounter
from backend.storage.redis_outage import RedisOutage

# Every so many increments, a process drops the windows that ended (one-off addresses).
SWEEP_EVERY = 1000


class DatabaseStorage(Storage):
    """Counters in one table; an increment is one upsert, so concurrent requests never lose one."""

    STORAGE_SCHEME: ClassVar[list[str]] = ["estafette+database"]

    def __init__(
        self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self._engine: Engine = options["engine"]
        self._increments = itertools.count(1)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        table = RateLimitCounter.__table__
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert(table).values(key=key, count=amount, expires_at=now + expiry)
        expired = table.c.expires_at <= now
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": _case(expired, amount, table.c.count + amount),
                "expires_at": _case(expired, now + expiry, table.c.expires_at),
            },
        ).returning(table.c.count)
        with self._engine.begin() as conn:
            count = int(conn.execute(statement).scalar_one())
        if next(self._increments) % SWEEP_EVERY == 0:
            self.sweep()
        return count

    def get(self, key: str) -> int:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(RateLimitCounter.count).where(
                    RateLimitCounter.key == key, RateLimitCounter.expires_at > time.time()
                )
            ).first()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        with self._engine.connect() as conn:
            expires = conn.execute(
                select(RateLimitCounter.expires_at).where(RateLimitCounter.key == key)
            ).scalar()
        return float(expires) if expires is not None else time.time()

    def check(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.execute(select(1))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        with self._engine.begin() as conn:
            return conn.execute(delete(RateLimitCounter)).rowcount

    def clear(self, key: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(RateLimitCounter).where(RateLimitCounter.key == key))

    def sweep(self) -> None:
        """Drop windows that ended: the table holds only live counters."""
        with self._engine.begin() as conn:
            conn.execute(delete(RateLimitCounter).where(RateLimitCounter.expires_at <= time.time()))


def _case(condition: Any, when_true: Any, otherwise: Any) -> Any:
    return case((condition, when_true), else_=otherwise)


class RedisWithDatabaseFallback(Storage):
    """Redis shares the counts; while it is unreachable, the database counts instead.

    The outage is logged once when it starts and once when it ends, not per request.
    """

    STORAGE_SCHEME: ClassVar[list[str]] = ["estafette+redis"]

    def __init__(
        self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self._redis = RedisStorage(
            options["redis_url"], socket_connect_timeout=0.5, socket_timeout=0.5
        )
        self._database = DatabaseStorage(engine=options["engine"])
        self._outage = RedisOutage("rate limits are counted")

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return (SQLAlchemyError,)

    def _call(self, name: str, *args: Any) -> Any:
        if self._outage.usable():
            try:
                result = getattr(self._redis, name)(*args)
            except redis.RedisError:
                self._outage.failed()
            else:
                self._outage.answered()
                return result
        return getattr(self._database, name)(*args)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return int(self._call("incr", key, expiry, amount))

    def get(self, key: str) -> int:
        return int(self._call("get", key))

    def get_expiry(self, key: str) -> float:
        return float(self._call("get_expiry", key))

    def check(self) -> bool:
        return bool(self._call("check"))

    def reset(self) -> int | None:
        return self._call("reset")

    def clear(self, key: str) -> None:
        self._call("clear", key)
