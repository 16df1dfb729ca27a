"""Claiming the outbox after a database restart: a dispatcher's own dead claims are taken
again at once, but never the events it still has on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backend.push import outbox_queries as queries
from backend.storage.database import session_scope
from devtools.drills.world import World

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
LEASE = timedelta(minutes=2)


def _claim(services, name: str, busy: frozenset[int] = frozenset()) -> list[int]:
    with session_scope(services.sessions) as db:
        rows = queries.claim(db, 100, LEASE, datetime.now(UTC), name, busy)
        return [row.id for row in rows]


def test_a_claim_whose_session_ended_is_taken_again_but_not_the_events_on_the_wire(
    services, world: World
) -> None:
    user = world.user()
    mailbox_id, _public_id = world.mailbox(user)
    events = [world.new_mail(mailbox_id)[1] for _ in range(3)]
    # "gone" holds no liveness lock: as a dispatcher whose session a restart just cut.
    first = _claim(services, "gone")
    assert first == events

    on_the_wire = frozenset(events[:2])
    assert _claim(services, "gone", busy=on_the_wire) == events[2:]
    assert _claim(services, "gone") == events  # off the wire, every dead claim is due at once
