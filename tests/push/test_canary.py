"""The canary: health data in a real message never leaves through the push path.

A message whose subject, sender and attachment name hold a unique string is delivered to
Dovecot over LMTP, picked up by a running sync worker, and pushed by the dispatcher through
firebase-admin to the local FCM server, with encrypted previews on. The string must then
be in no FCM request, no log record, no audit row and no metric.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from email.message import EmailMessage

import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import select

from backend.push import previews
from backend.push.dispatcher import Dispatcher
from backend.push.fcm import FcmSender
from backend.storage.models import AuditRecord, Mailbox, Message, User
from backend.sync.worker import SyncWorker
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm
from tests.factories import create_dovecot_mailbox, create_user
from tests.support import wait_until


@pytest.fixture
def sync_app(make_app, dovecot):
    app = make_app(ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path))
    yield app


def _canary_mail(canary: str, to: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Dr {canary} <{canary.lower()}@ch-exemple.mssante.fr>"
    message["To"] = to
    message["Subject"] = f"Résultats {canary}"
    message.set_content(f"Patient {canary}.")
    message.add_attachment(
        b"%PDF-1.4 canary", maintype="application", subtype="pdf", filename=f"{canary}.pdf"
    )
    return bytes(message)


def test_the_canary_is_in_no_fcm_request_log_audit_row_or_metric(
    sync_app, dovecot, fake_fcm: FakeFcm, sender: FcmSender, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, firebase_admin, httpx, imapclient
    canary = f"CANARY{uuid.uuid4().hex[:12].upper()}"
    services = sync_app.extensions["estafette"]
    username = create_user(services)
    address, _password, public_id = create_dovecot_mailbox(services, dovecot, owner=username)
    with services.sessions() as db:
        user_id = db.scalar(select(User.id).where(User.username == username))
    key = b"\x07" * 32
    World(services).device(user_id, "canary-phone", push_key=key)

    stop = threading.Event()
    worker = SyncWorker(services.sessions, services.settings, pool_size=2)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    dispatcher = Dispatcher(services.sessions, sender, previews=True)
    try:
        wait_until(lambda: _synced(services, public_id), what="the first sync of the mailbox")
        dovecot.deliver(address, _canary_mail(canary, address))
        wait_until(
            lambda: dispatcher.drain() >= 0 and fake_fcm.requests,
            timeout=20,
            what="the push for the canary message",
        )
    finally:
        stop.set()
        worker.stop()
        thread.join(timeout=30)

    # The canary really went through the gateway: cached (encrypted) and sealed for the phone.
    with services.sessions() as db:
        [message] = db.scalars(select(Message)).all()
        assert canary in message.subject
        audit = [
            json.dumps([r.actor, r.action, r.target, r.mailbox, r.details], default=str)
            for r in db.scalars(select(AuditRecord))
        ]
    [request] = fake_fcm.requests
    assert canary in previews.open_sealed(key, public_id, request.data["enc"])["subject"]

    wire = json.dumps([[r.path, r.headers, r.body] for r in fake_fcm.requests])
    assert canary not in wire
    assert canary.lower() not in wire.lower()
    assert canary.lower() not in caplog.text.lower()
    assert not [row for row in audit if canary.lower() in row.lower()]
    # Every metric: this process's registry (what sync and push serve on their own port),
    # and the api's /metrics with the database's shared state read at scrape time.
    scrapes = [
        generate_latest(REGISTRY).decode(),
        sync_app.test_client().get("/metrics").get_data(as_text=True),
    ]
    for scrape in scrapes:
        assert canary.lower() not in scrape.lower()
        assert address.lower() not in scrape.lower()


def _synced(services, public_id: str) -> bool:
    with services.sessions() as db:
        state = db.scalar(select(Mailbox.sync_state).where(Mailbox.public_id == public_id))
        return state == "ok"
