"""Workers share the mailboxes evenly: a joining worker gets its half, a leaving one gives
its mailboxes back at once, and no message is lost or announced twice on the way."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.storage.models import Mailbox, Message, OutboxEvent
from tests.factories import create_dovecot_mailbox
from tests.support import wait_until
from tests.sync.support import RunningWorker, mail

MAILBOXES = 6


@pytest.fixture
def services_(make_app, dovecot):
    app = make_app(ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path), ESTAFETTE_SYNC_LEASE_SECONDS="6")
    yield app.extensions["estafette"]
    app.extensions["estafette"].engine.dispose()


def held(services, worker_id: str) -> int:
    with services.sessions() as db:
        return db.scalar(
            select(func.count()).select_from(Mailbox).where(Mailbox.lease_owner == worker_id)
        )


def all_ok(services) -> bool:
    with services.sessions() as db:
        return set(db.scalars(select(Mailbox.sync_state))) == {"ok"}


def messages(services) -> int:
    with services.sessions() as db:
        return db.scalar(select(func.count()).select_from(Message))


def test_a_joining_worker_takes_half_and_a_leaving_one_hands_its_share_back(
    services_, dovecot
) -> None:
    addresses = [create_dovecot_mailbox(services_, dovecot)[0] for _ in range(MAILBOXES)]

    def deliver_everywhere(subject: str) -> None:
        for address in addresses:
            dovecot.deliver(address, mail(subject, to=address))

    with RunningWorker(services_) as first:
        wait_until(lambda: held(services_, first.worker_id) == MAILBOXES, what="the first")
        with RunningWorker(services_) as second:
            wait_until(
                lambda: (
                    held(services_, first.worker_id)
                    == held(services_, second.worker_id)
                    == MAILBOXES // 2
                ),
                what="an even split",
            )
            wait_until(lambda: all_ok(services_), what="every mailbox in IDLE again")
            deliver_everywhere("partagé")
            wait_until(lambda: messages(services_) == MAILBOXES, what="mail on both workers")
        wait_until(
            lambda: held(services_, first.worker_id) == MAILBOXES,
            timeout=6,
            what="the share of the worker that left, without waiting for its leases to expire",
        )
        wait_until(lambda: all_ok(services_), what="every mailbox in IDLE on the first")
        deliver_everywhere("repris")
        wait_until(lambda: messages(services_) == 2 * MAILBOXES, what="mail after the hand-back")

    with services_.sessions() as db:
        counts = db.execute(
            select(OutboxEvent.message_id, func.count())
            .where(OutboxEvent.kind == "mail.new")
            .group_by(OutboxEvent.message_id)
        ).all()
    assert len(counts) == 2 * MAILBOXES
    assert {count for _, count in counts} == {1}
