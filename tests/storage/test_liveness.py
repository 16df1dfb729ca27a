"""Liveness: a holder is alive exactly as long as its PostgreSQL session."""

from __future__ import annotations

import pytest
from sqlalchemy import String, literal, select, text

from backend.storage import liveness
from tests.support import wait_until

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _is_orphaned(services, holder: str) -> bool:
    with services.engine.connect() as conn:
        return bool(conn.scalar(select(liveness.orphaned(literal(holder, String)))))


def test_a_holder_is_alive_while_it_holds_and_orphaned_once_it_lets_go(services) -> None:
    assert _is_orphaned(services, "worker-a")
    liveness.hold(services.engine, "worker-a")
    assert not _is_orphaned(services, "worker-a")
    liveness.let_go(services.engine, "worker-a")
    assert _is_orphaned(services, "worker-a")


def test_a_holder_whose_session_was_cut_takes_its_lock_again(services, monkeypatch) -> None:
    monkeypatch.setattr(liveness, "CHECK_SECONDS", 0.0)
    liveness.hold(services.engine, "worker-b")
    with services.engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = :space AND objid::int = hashtext('worker-b')"
            ),
            {"space": liveness.LIVENESS_SPACE},
        )
    wait_until(lambda: _is_orphaned(services, "worker-b"), what="the cut session to end")
    liveness.hold(services.engine, "worker-b")
    assert not _is_orphaned(services, "worker-b")


def test_a_disposed_engine_ends_its_holders_sessions(services) -> None:
    from backend.storage.database import make_engine

    other = make_engine(str(services.engine.url.render_as_string(hide_password=False)))
    liveness.hold(other, "worker-c")
    assert not _is_orphaned(services, "worker-c")
    other.dispose()
    assert _is_orphaned(services, "worker-c")
