"""Two sync workers share the mailboxes through leases; when one dies, the other takes over.

Real processes (`flask --app mobile_api sync`), real Dovecot, both databases. A worker is
SIGKILLed mid-flight while mail keeps arriving: every message must still get exactly one
`mail.new` outbox row (so exactly one push), and the survivor must hold every lease soon
after the dead worker's leases expire.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.storage.models import Mailbox, Message, OutboxEvent
from tests.factories import create_dovecot_mailbox
from tests.support import wait_until
from tests.sync.support import mail

LEASE_SECONDS = 5
MAILBOXES = 6


@pytest.fixture
def env(base_env, dovecot) -> dict[str, str]:
    return {
        **base_env,
        "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path),
        "ESTAFETTE_SYNC_LEASE_SECONDS": str(LEASE_SECONDS),
    }


@pytest.fixture
def services_(env):
    from mobile_api import create_app

    app = create_app(env)
    yield app.extensions["estafette"]
    app.extensions["estafette"].engine.dispose()


class Workers:
    """`flask sync` processes; whatever is still running at the end is killed."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env}
        self.logs = logs
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, *options: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "mobile_api", "sync", *options],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture
def workers(env, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(env, tmp_path)
    yield pool
    pool.stop_all()


def owners(services) -> dict[int, str | None]:
    with services.sessions() as db:
        return dict(db.execute(select(Mailbox.id, Mailbox.lease_owner)).all())


def held_by(services, process: subprocess.Popen) -> int:
    """How many mailboxes the process leases (worker ids are host:pid:random)."""
    pid = str(process.pid)
    return sum(1 for owner in owners(services).values() if owner and owner.split(":")[1] == pid)


def all_in_sync(services) -> bool:
    with services.sessions() as db:
        return set(db.scalars(select(Mailbox.sync_state))) == {"ok"}


def messages_per_mailbox(services) -> list[int]:
    with services.sessions() as db:
        counts = dict(
            db.execute(select(Message.mailbox_id, func.count()).group_by(Message.mailbox_id)).all()
        )
        return [counts.get(mailbox_id, 0) for mailbox_id in db.scalars(select(Mailbox.id))]


def test_a_killed_worker_s_mailboxes_are_taken_over_and_every_message_is_pushed_once(
    services_, dovecot, workers: Workers
) -> None:
    addresses = [create_dovecot_mailbox(services_, dovecot)[0] for _ in range(MAILBOXES)]
    doomed = workers.start("doomed", "--max-mailboxes", str(MAILBOXES // 2))
    wait_until(lambda: held_by(services_, doomed) == MAILBOXES // 2, what="the first worker")
    survivor = workers.start("survivor")
    wait_until(lambda: held_by(services_, survivor) == MAILBOXES // 2, what="the second worker")
    wait_until(lambda: all_in_sync(services_), what="every mailbox in IDLE")

    def deliver_round(number: int) -> None:
        for address in addresses:
            dovecot.deliver(address, mail(f"tour {number}", to=address))

    deliver_round(1)
    wait_until(lambda: messages_per_mailbox(services_) == [1] * MAILBOXES, what="round 1")

    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    deliver_round(2)  # half of these land in mailboxes nobody watches for now
    wait_until(
        lambda: held_by(services_, survivor) == MAILBOXES,
        timeout=2 * LEASE_SECONDS,
        what="the survivor to hold every lease once the dead worker's expired",
    )
    deliver_round(3)
    wait_until(
        lambda: messages_per_mailbox(services_) == [3] * MAILBOXES,
        what="rounds 2 and 3 everywhere",
    )

    with services_.sessions() as db:
        announced = db.execute(
            select(OutboxEvent.message_id, func.count())
            .where(OutboxEvent.kind == "mail.new")
            .group_by(OutboxEvent.message_id)
        ).all()
        message_ids = set(db.scalars(select(Message.id)))
    assert {message_id for message_id, _ in announced} == message_ids
    assert {count for _, count in announced} == {1}, "a message was announced twice"
    assert survivor.poll() is None
