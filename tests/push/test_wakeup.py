"""An idle dispatcher wakes when an outbox row commits, not on its next poll.

PostgreSQL only: SQLite has no notification channel, and its dispatcher polls every 50 ms.
"""

from __future__ import annotations

import threading

import pytest

from backend.push import wakeup
from backend.push.wakeup import OutboxWakeup
from devtools.drills.world import World
from tests.support import wait_until

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@on_postgresql
def test_a_committed_outbox_row_wakes_a_listening_dispatcher(
    services, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A poll so rare that only the notification can end the wait before the deadline.
    monkeypatch.setattr(wakeup, "LISTEN_POLL_SECONDS", 120.0)
    mailbox_id, _public = world.mailbox(world.user())
    waiter = OutboxWakeup(services.engine)
    waiter._connection()  # listening before the commit, as a running dispatcher is
    done = threading.Event()
    thread = threading.Thread(target=lambda: (waiter.wait(threading.Event()), done.set()))
    thread.start()
    try:
        world.new_mail(mailbox_id)
        wait_until(done.is_set, timeout=30, what="the NOTIFY to end the dispatcher's wait")
    finally:
        thread.join(timeout=130)
        waiter.close()


@on_postgresql
def test_a_lost_notification_connection_is_reopened(
    services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wakeup, "LISTEN_POLL_SECONDS", 0.05)
    waiter = OutboxWakeup(services.engine)
    lost = waiter._connection()
    lost.close()  # as if PostgreSQL had restarted under the dispatcher
    waiter.wait(threading.Event())
    assert waiter._conn is not None and waiter._conn is not lost and not waiter._conn.closed
    waiter.close()


def test_only_postgresql_dispatchers_listen_the_others_poll(services) -> None:
    listening = OutboxWakeup(services.engine)._listening
    assert listening == (services.engine.dialect.name == "postgresql")
