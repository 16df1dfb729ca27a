"""Fault drills of issue 21, sync side, on real processes: a `flask --app mobile_api sync`
process, real Dovecot, PostgreSQL (the suite's, or a throwaway cluster the drill stops).

(a) the hostile-mail corpus in one mailbox: all listed, all open, the mailbox stays `ok`,
    the next ordinary mail is synced and announced, the process stays under 256 MB;
(b) a PostgreSQL outage: a handful of log lines, mailboxes stay `ok`, mail delivered
    during the outage is in the database soon after it ends;
(c) SIGKILL in the middle of a first import: resumed, and no old message announced.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.storage.database import make_engine, upgrade_schema
from backend.storage.models import Mailbox, Message, OutboxEvent
from devtools import corpus
from devtools.drills.push_harness import DrillGateway, everything_received, tally, wait_for
from devtools.drills.sync_harness import (
    SyncProcess,
    ThrowawayPostgres,
    deliver_many,
)
from tests.factories import create_dovecot_mailbox
from tests.messages.support import Inbox
from tests.support import body, wait_until
from tests.sync.support import mail, outbox_count, sync_state

pytestmark = pytest.mark.drill

RSS_LIMIT_KIB = 256 * 1024
# The field drill held 45 s (ESTAFETTE_DRILL_OUTAGE_SECONDS=45; bench/faults.py does);
# the behaviour does not depend on the length, so make test holds it for 12 s.
OUTAGE_SECONDS = float(os.environ.get("ESTAFETTE_DRILL_OUTAGE_SECONDS", "12"))


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


def _quiet_during(lines: list[str]) -> list[str]:
    return [line for line in lines if "stopped" not in line and "stopping" not in line]


@pytest.mark.parametrize("downtime", ["restart", "outage"])
def test_a_database_outage_is_one_event_and_its_mail_is_pushed_once_it_returns(
    throwaway_postgres: ThrowawayPostgres, dovecot, fake_fcm, tmp_path: Path, downtime: str
):
    """`restart`: pg_ctl stop then start at once; `outage`: down for OUTAGE_SECONDS."""
    url = throwaway_postgres.create_database("estafette")
    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    with DrillGateway(url, fake_fcm, tmp_path, dovecot=dovecot) as gateway:
        tokens = gateway.devices(2)
        boxes = [gateway.imap_mailbox() for _ in range(3)]
        expected = {(public_id, token) for _address, public_id in boxes for token in tokens}
        push, sync = gateway.start("push"), gateway.start("sync")
        # Both past their start (imports, schema check): the outage is the drill's, not a
        # process that could not start (systemd would restart that one).
        gateway.wait_ready(push)
        wait_for(gateway.in_idle, timeout=60, what="every mailbox in IDLE")
        before = {process.pid: len(gateway.log_lines(process)) for process in (push, sync)}

        throwaway_postgres.stop()
        started = time.monotonic()
        for address, _public_id in boxes:
            gateway.deliver(address, "pendant la panne")
        if downtime == "outage":
            wait_for(
                lambda: any("database unavailable" in line for line in gateway.log_lines(sync)),
                timeout=30,
                what="the sync to notice the outage",
            )
            # The outage itself: the drill's scenario, not a wait for a result.
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
        throwaway_postgres.start()
        returned = time.time()

        wait_for(everything_received(gateway, expected), timeout=60, what="every push")
        accounts = tally(gateway.fcm.requests, expected)
        assert {t: (a.lost, a.duplicated) for t, a in accounts.items()} == dict.fromkeys(
            tokens, (0, 0)
        )
        assert len(gateway.first_push_after(expected, returned)) == len(expected)
        wait_for(gateway.in_idle, timeout=30, what="every mailbox back to ok")
        assert push.poll() is None and sync.poll() is None
        for process in (push, sync):
            during = _quiet_during(gateway.log_lines(process)[before[process.pid] :])
            assert len(during) <= 6, "\n".join(during)  # an event, not a flood
            assert not any("Traceback" in line for line in during), "\n".join(during)


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
