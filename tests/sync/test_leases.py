"""Mailbox leases: concurrent claimers never share a mailbox, on SQLite as on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select, update

from backend.mailboxes import registry
from backend.storage import liveness
from backend.storage.database import session_scope
from backend.storage.models import Mailbox, utcnow
from backend.sync import leases


def _mailboxes(services, count: int) -> set[int]:
    ids = set()
    with session_scope(services.sessions) as db:
        for index in range(count):
            mailbox = registry.create_mailbox(
                db=db,
                address=f"lease{index}@chu-test.mssante.fr",
                kind="PER",
                imap=registry.ServerSettings("imap.invalid", 993, "tls", "password", None, "x"),
            )
            ids.add(mailbox.id)
    return ids


def test_two_workers_claiming_at_once_split_the_mailboxes_without_overlap(services) -> None:
    everything = _mailboxes(services, 40)
    start = threading.Barrier(2)
    won: dict[str, set[int]] = {"a": set(), "b": set()}

    def claimer(worker: str) -> None:
        start.wait()
        while True:
            with session_scope(services.sessions) as db:
                claimed = leases.claim(db=db, worker=worker, lease_seconds=30, limit=7)
                won[worker] |= {m.id for m in claimed}
            if not claimed:
                return

    threads = [threading.Thread(target=claimer, args=(w,)) for w in won]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not won["a"] & won["b"], "a mailbox was given to both workers"
    assert won["a"] | won["b"] == everything
    with services.sessions() as db:
        owners = dict(db.execute(select(Mailbox.id, Mailbox.lease_owner)).all())
    assert {mailbox_id for mailbox_id, owner in owners.items() if owner == "a"} == won["a"]


def test_only_an_expired_lease_can_be_taken_over(services) -> None:
    fresh, expired = sorted(_mailboxes(services, 2))
    with session_scope(services.sessions) as db:
        leases.claim(db=db, worker="dead", lease_seconds=30, limit=2)
        db.execute(
            update(Mailbox)
            .where(Mailbox.id == expired)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    with session_scope(services.sessions) as db:
        taken = [m.id for m in leases.claim(db=db, worker="alive", lease_seconds=30, limit=10)]
    assert taken == [expired]
    with session_scope(services.sessions) as db:
        assert leases.renew(db=db, worker="dead", lease_seconds=30).keys() == {fresh}


def test_the_fair_share_splits_evenly_and_capped_workers_take_only_their_cap(services) -> None:
    _mailboxes(services, 10)
    with services.sessions() as db:
        assert leases.fair_share(db=db, capacities=[100, 100], mine=100) == 5
        assert leases.fair_share(db=db, capacities=[100, 100, 100], mine=100) == 4
        assert leases.fair_share(db=db, capacities=[2, 100], mine=2) == 2
        assert leases.fair_share(db=db, capacities=[2, 100], mine=100) == 8
        assert leases.fair_share(db=db, capacities=[100], mine=100) == 10


def _session_ends(services, worker: str) -> None:
    """What a SIGKILL does to a worker, as PostgreSQL sees it: its session closes."""
    liveness.let_go(services.engine, worker)


def test_a_fresh_lease_whose_worker_session_ended_is_taken_at_once_on_postgresql(
    services,
) -> None:
    everything = _mailboxes(services, 3)
    with session_scope(services.sessions) as db:
        leases.claim(db=db, worker="killed", lease_seconds=30, limit=3)
    _session_ends(services, "killed")
    with session_scope(services.sessions) as db:
        taken = {m.id for m in leases.claim(db=db, worker="heir", lease_seconds=30, limit=10)}
    if services.engine.dialect.name == "postgresql":
        assert taken == everything  # liveness came from the session, not the clock
    else:
        assert taken == set()  # SQLite has no sessions: the time lease decides


def test_a_killed_worker_leaves_the_fair_share_at_once_on_postgresql(services) -> None:
    _mailboxes(services, 10)
    with session_scope(services.sessions) as db:
        leases.renew(db=db, worker="killed", lease_seconds=30)
        leases.beat(db=db, worker="killed", capacity=100, lease_seconds=30)
        leases.renew(db=db, worker="heir", lease_seconds=30)
        live = leases.beat(db=db, worker="heir", capacity=100, lease_seconds=30)
    assert live == [100, 100]
    _session_ends(services, "killed")
    with session_scope(services.sessions) as db:
        live = leases.beat(db=db, worker="heir", capacity=100, lease_seconds=30)
        share = leases.fair_share(db=db, capacities=live, mine=100)
    expected = 10 if services.engine.dialect.name == "postgresql" else 5
    assert share == expected
