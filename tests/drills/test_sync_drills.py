"""Fault drills of issue 21, sync side, on real processes: a `flask --app mobile_api sync`
process, real Dovecot, PostgreSQL (the suite's, or a throwaway cluster the drill stops).

(a) the hostile-mail corpus in one mailbox: all listed, all open, the mailbox stays `ok`,
    the next ordinary mail is synced and announced, the process stays under 256 MB;
(b) a PostgreSQL outage: a handful of log lines, mailboxes stay `ok`, mail delivered
    during the outage is in the database soon after it ends;
(c) SIGKILL in the middle of a first import: resumed, and no old message announced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.storage.database import make_engine, upgrade_schema
from backend.storage.models import Mailbox, Message, OutboxEvent
from tests.drills.sync_harness import (
    SyncProcess,
    ThrowawayPostgres,
    deliver_many,
    gateway_env,
)
from tests.factories import create_dovecot_mailbox
from tests.messages import corpus
from tests.messages.support import Inbox
from tests.support import body, wait_until
from tests.sync.support import mail, outbox_count, subjects, sync_state

pytestmark = pytest.mark.drill

RSS_LIMIT_KIB = 256 * 1024
OUTAGE_SECONDS = 12  # the field drill held 45 s; the behaviour does not depend on it


def _app(env: dict[str, str]) -> Any:
    from mobile_api import create_app

    return create_app({**env, "TESTING": True})


def _message_count(services: Any, public_id: str) -> int:
    with services.sessions() as db:
        return db.scalar(
            select(func.count(Message.id))
            .join(Mailbox, Mailbox.id == Message.mailbox_id)
            .where(Mailbox.public_id == public_id)
        )


def _subjects(services: Any, public_id: str) -> list[str | None]:
    with services.sessions() as db:
        messages = db.scalars(
            select(Message)
            .join(Mailbox, Mailbox.id == Message.mailbox_id)
            .where(Mailbox.public_id == public_id)
        )
        return [message.subject for message in messages]  # sealed: opened by the model


# -- (a) hostile mail ------------------------------------------------------------------


@pytest.fixture
def hostile_gateway(base_env, dovecot, tmp_path: Path) -> Iterator[tuple[Any, Any, Path]]:
    """The app on the suite's PostgreSQL (see ON_POSTGRES), as in the field drill."""
    env = {
        **base_env,
        "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path),
        "ESTAFETTE_SYNC_LEASE_SECONDS": "6",
    }
    app = _app(env)
    yield app, env, tmp_path
    app.extensions["estafette"].engine.dispose()


# The field drills ran on PostgreSQL; once is enough for a drill's budget.
ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@ON_POSTGRES
def test_hostile_mail_never_blocks_the_mailbox_nor_blows_the_memory(hostile_gateway, dovecot):
    app, env, tmp_path = hostile_gateway
    services = app.extensions["estafette"]
    inbox = Inbox.create(app.test_client(), services, dovecot)
    sync = SyncProcess(env, tmp_path / "sync.log").start()
    try:
        wait_until(lambda: sync_state(services, inbox.mailbox_id)[0] == "ok", what="IDLE")
        hostile = corpus.hostile_corpus(inbox.address)
        deliver_many(dovecot, inbox.address, hostile.values())
        dovecot.deliver(inbox.address, mail("après le corpus", to=inbox.address))
        wait_until(
            lambda: "après le corpus" in _subjects(services, inbox.mailbox_id),
            timeout=120,
            what="the ordinary mail after the hostile corpus",
        )
        peak = sync.peak_rss_kib()
        assert sync.alive()
    finally:
        sync.stop()

    assert sync_state(services, inbox.mailbox_id)[0] == "ok"
    assert outbox_count(services, inbox.mailbox_id) == len(hostile) + 1
    assert peak < RSS_LIMIT_KIB, f"sync peaked at {peak // 1024} MB"
    listed = []
    cursor = None
    while True:
        query = f"?limit=50&cursor={cursor}" if cursor else "?limit=50"
        page = inbox.http.get(
            f"/api/v1/mailboxes/{inbox.mailbox_id}/messages{query}", headers=inbox.headers
        )
        assert page.status_code == 200, body(page)
        listed += body(page)["items"]
        cursor = body(page).get("next")
        if not cursor:
            break
    assert len(listed) == len(hostile) + 1
    for envelope in listed:
        opened = inbox.get(envelope["id"])
        assert opened.status_code < 500, (envelope["id"], body(opened))
    print(f"DRILL hostile: sync VmHWM {peak // 1024} MB for {len(hostile)} hostile messages")


# -- (b) a database outage -------------------------------------------------------------


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    cluster = ThrowawayPostgres()
    cluster.start()
    yield cluster
    cluster.destroy()


def test_a_database_outage_is_one_event_and_mail_flows_again_at_once(
    throwaway_postgres: ThrowawayPostgres, dovecot, tmp_path: Path
):
    url = throwaway_postgres.create_database("estafette")
    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    env = gateway_env(url, dovecot, tmp_path / "var", ESTAFETTE_SYNC_LEASE_SECONDS="6")
    app = _app(env)
    services = app.extensions["estafette"]
    mailboxes = [create_dovecot_mailbox(services, dovecot)[::2] for _ in range(3)]
    sync = SyncProcess(env, tmp_path / "sync.log").start()
    try:
        for _address, public_id in mailboxes:
            wait_until(lambda p=public_id: sync_state(services, p)[0] == "ok", what="IDLE")
        before = len(sync.log_lines())

        throwaway_postgres.stop()
        started = time.monotonic()
        for address, _public_id in mailboxes:
            dovecot.deliver(address, mail("pendant la panne", to=address))
        wait_until(
            lambda: any("database unavailable" in line for line in sync.log_lines()),
            what="the sync to notice the outage",
        )
        # The outage itself: the drill's scenario, not a wait for a result.
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
        throwaway_postgres.start()

        for _address, public_id in mailboxes:
            wait_until(
                lambda p=public_id: subjects(services, p) == ["pendant la panne"],
                timeout=30,
                what="mail delivered during the outage, in the database",
            )
        wait_until(
            lambda: any("database available again" in line for line in sync.log_lines()),
            what="the end of the outage in the log",
        )
        assert sync.alive()
    finally:
        sync.stop()
        app.extensions["estafette"].engine.dispose()

    during = sync.log_lines()[before:]
    during = [line for line in during if "stopped" not in line and "stopping" not in line]
    assert len(during) <= 6, "\n".join(during)
    assert not any("Traceback" in line for line in during), "\n".join(during)
    for _address, public_id in mailboxes:
        assert sync_state(services, public_id)[0] == "ok"
    with services.sessions() as db:
        assert db.scalar(select(func.count(OutboxEvent.id))) == len(mailboxes)


# -- (c) SIGKILL during a first import -------------------------------------------------


@ON_POSTGRES
def test_a_first_import_killed_midway_resumes_without_announcing_old_mail(hostile_gateway, dovecot):
    app, env, tmp_path = hostile_gateway
    services = app.extensions["estafette"]
    address, _password, public_id = create_dovecot_mailbox(services, dovecot)
    old = 1200  # six batches: time enough to kill the worker between two of them
    deliver_many(dovecot, address, (mail(f"ancien {n}", to=address) for n in range(old)))

    first = SyncProcess(env, tmp_path / "first.log").start()
    try:
        wait_until(
            lambda: _message_count(services, public_id) > 0,
            timeout=60,
            interval=0.01,
            what="the first batch of the import",
        )
    finally:
        first.kill()
    imported = _message_count(services, public_id)
    assert 0 < imported < old, f"the kill came too late: {imported} of {old} imported"

    dovecot.deliver(address, mail("nouveau", to=address))
    second = SyncProcess(env, tmp_path / "second.log").start()
    try:
        wait_until(
            lambda: _message_count(services, public_id) == old + 1,
            timeout=120,
            what="the resumed import and the new mail",
        )
    finally:
        second.stop()

    with services.sessions() as db:
        announced = [
            message.subject  # sealed: opened by the model
            for message in db.scalars(
                select(Message)
                .join(OutboxEvent, OutboxEvent.message_id == Message.id)
                .where(OutboxEvent.kind == "mail.new")
            )
        ]
    assert announced == ["nouveau"]
