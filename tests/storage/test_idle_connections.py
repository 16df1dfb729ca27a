"""Pooled connections: pinged before use only after sitting idle, replaced when dead."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from backend.storage import database
from backend.storage.database import make_engine

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT pg_backend_pid()"))


def _pings(engine) -> list[str]:
    """The `SELECT 1` pings sent on `engine` from now on."""
    pings: list[str] = []
    original = engine.dialect.do_ping

    def counted(dbapi_connection) -> bool:
        pings.append("ping")
        return original(dbapi_connection)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


def test_a_connection_in_steady_use_is_not_pinged(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        first = _backend_pid(engine)
        pings = _pings(engine)
        for _ in range(5):
            assert _backend_pid(engine) == first
        assert pings == []
    finally:
        engine.dispose()


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url)
    try:
        dropped = _backend_pid(engine)
        admin = make_engine(database_url)
        with admin.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped})
        admin.dispose()
        monkeypatch.setattr(database, "IDLE_BEFORE_PING_SECONDS", 0.0)  # idle long enough
        pings = _pings(engine)
        replacement = _backend_pid(engine)  # no error: the dead one was found by its ping
        assert replacement != dropped
        assert pings == ["ping"]
    finally:
        engine.dispose()
