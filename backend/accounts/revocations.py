"""Revoked token ids, shared by every api process: the database is the truth, Redis the fast path.

Every revocation is written to the database first, so that neither a Redis outage nor a
Redis restart (it keeps nothing on disk) can bring a revoked token back. Reads go to Redis;
while Redis is unreachable they go to the database, and the outage is logged once when it
starts and once when it ends. Redis is reloaded from the database whenever it may have
missed revocations: after it was emptied (a marker key is gone), or after this process
revoked while Redis was away.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import redis
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.storage.database import session_scope
from backend.storage.models import RevokedToken, utcnow
from backend.storage.redis_outage import RedisOutage

_PREFIX = "estafette:revoked:"
_LOADED = "estafette:revocations-loaded"


class RevocationStore(Protocol):
    def revoke(self, jti: str, expires_at: datetime) -> None: ...

    def is_revoked(self, jti: str) -> bool: ...


class DatabaseRevocations:
    """One table, expired rows swept on write."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def revoke(self, jti: str, expires_at: datetime) -> None:
        try:
            with session_scope(self._sessions) as db:
                db.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
                db.add(RevokedToken(jti=jti, expires_at=expires_at))
        except IntegrityError:
            pass  # already revoked

    def is_revoked(self, jti: str) -> bool:
        with self._sessions() as db:
            return db.scalar(select(RevokedToken.jti).where(RevokedToken.jti == jti)) is not None

    def live(self) -> list[tuple[str, datetime]]:
        with self._sessions() as db:
            rows = db.execute(
                select(RevokedToken.jti, RevokedToken.expires_at).where(
                    RevokedToken.expires_at >= utcnow()
                )
            )
            return [(jti, expires_at) for jti, expires_at in rows]


class RedisRevocations:
    """Keys expire with the token, so Redis never holds more than the live tokens."""

    def __init__(self, url: str, database: DatabaseRevocations) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self._database = database
        self._outage = RedisOutage("token revocations are read")
        self._missed = False  # this process revoked while Redis was away

    def revoke(self, jti: str, expires_at: datetime) -> None:
        self._database.revoke(jti, expires_at)
        if self._outage.usable():
            try:
                self._redis.set(f"{_PREFIX}{jti}", b"1", ex=_ttl(expires_at))
                self._outage.answered()
                return
            except redis.RedisError:
                self._redis_failed()
        self._missed = True

    def is_revoked(self, jti: str) -> bool:
        if self._outage.usable():
            try:
                revoked, loaded = self._redis.mget([f"{_PREFIX}{jti}", _LOADED])
                if loaded is None or self._missed:
                    self._reload()
                    return self._database.is_revoked(jti)
                self._outage.answered()
                return revoked is not None
            except redis.RedisError:
                self._redis_failed()
        return self._database.is_revoked(jti)

    def _reload(self) -> None:
        """Copy the database's live revocations into Redis, then mark Redis as complete."""
        self._missed = False
        pipeline = self._redis.pipeline(transaction=False)
        for jti, expires_at in self._database.live():
            pipeline.set(f"{_PREFIX}{jti}", b"1", ex=_ttl(expires_at))
        pipeline.set(_LOADED, b"1")
        pipeline.execute()
        self._outage.answered()

    def _redis_failed(self) -> None:
        self._outage.failed()
        self._missed = True  # Redis may come back emptied, or miss what others revoked


def _ttl(expires_at: datetime) -> int:
    return max(int((expires_at - utcnow()).total_seconds()) + 1, 1)


def make_revocation_store(
    redis_url: str | None, sessions: sessionmaker[Session]
) -> RevocationStore:
    database = DatabaseRevocations(sessions)
    return RedisRevocations(redis_url, database) if redis_url else database
