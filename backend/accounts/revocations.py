"""Revoked token ids, shared by every api process: in Redis when configured, else the database."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import redis
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.storage.database import session_scope
from backend.storage.models import RevokedToken, utcnow


class RevocationStore(Protocol):
    def revoke(self, jti: str, expires_at: datetime) -> None: ...

    def is_revoked(self, jti: str) -> bool: ...


class RedisRevocations:
    """Keys expire with the token, so the blocklist never grows past live tokens."""

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)

    def revoke(self, jti: str, expires_at: datetime) -> None:
        ttl = max(int((expires_at - utcnow()).total_seconds()) + 1, 1)
        self._redis.set(f"estafette:revoked:{jti}", b"1", ex=ttl)

    def is_revoked(self, jti: str) -> bool:
        return bool(self._redis.exists(f"estafette:revoked:{jti}"))


class DatabaseRevocations:
    """The embedded default: one table, expired rows swept on write."""

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


def make_revocation_store(
    redis_url: str | None, sessions: sessionmaker[Session]
) -> RevocationStore:
    return RedisRevocations(redis_url) if redis_url else DatabaseRevocations(sessions)
