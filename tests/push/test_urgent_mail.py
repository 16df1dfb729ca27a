"""Urgent mail, as senders' clients mark it, is visible to the app and in the push.

Real messages with each header are delivered to Dovecot, picked up by a running sync
worker, listed through the API and pushed through firebase-admin to the local FCM server.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from backend.push.dispatcher import Dispatcher
from backend.push.fcm import FcmSender
from backend.storage.models import Mailbox
from backend.sync.worker import SyncWorker
from devtools.fcm_server import FakeFcm
from tests.factories import create_dovecot_mailbox, create_user
from tests.support import Authenticator, bearer, body, wait_until

MARKS = [
    ("Importance", "high", True),
    ("X-Priority", "1 (Highest)", True),
    ("X-Priority", "2 (High)", True),
    ("Priority", "urgent", True),
    ("X-Priority", "3 (Normal)", False),
    ("Importance", "normal", False),
]


def _marked(name: str, value: str, to: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Laboratoire <labo@ch-exemple.mssante.fr>"
    message["To"] = to
    message["Subject"] = f"Kaliémie {uuid.uuid4().hex[:6]}"
    message[name] = value
    message.set_content("Résultat critique.")
    return bytes(message)


@pytest.fixture
def running_gateway(dovecot_app, sender: FcmSender) -> Iterator[tuple[Any, Dispatcher]]:
    """The app, a sync worker on a thread, and a dispatcher to drain by hand."""
    services = dovecot_app.extensions["estafette"]
    stop = threading.Event()
    worker = SyncWorker(services.sessions, services.settings, pool_size=2)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield dovecot_app, Dispatcher(services.sessions, sender)
    finally:
        stop.set()
        worker.stop()
        thread.join(timeout=30)


def test_each_urgent_mark_reaches_the_envelope_and_the_push_and_no_other_does(
    running_gateway, dovecot, fake_fcm: FakeFcm
) -> None:
    app, dispatcher = running_gateway
    services = app.extensions["estafette"]
    username = create_user(services)
    address, _password, public_id = create_dovecot_mailbox(services, dovecot, owner=username)
    client = app.test_client()
    session = Authenticator().sign_in(
        client,
        username,
        device={"name": "iPhone de garde", "platform": "ios", "push_token": "tok-urgent"},
    )
    auth = bearer(session["access_token"])
    wait_until(lambda: _sync_state(services, public_id) == "ok", what="the first sync")

    for pushed, (name, value, urgent) in enumerate(MARKS):
        dovecot.deliver(address, _marked(name, value, address))
        wait_until(
            lambda n=pushed: dispatcher.drain() >= 0 and len(fake_fcm.requests) > n,
            timeout=20,
            what=f"the push for {name}: {value}",
        )
        push = fake_fcm.requests[-1].message
        newest = body(client.get(f"/api/v1/mailboxes/{public_id}/messages?limit=1", headers=auth))
        assert newest["items"][0]["urgent"] is urgent, (name, value)
        assert ("urgent" in push["data"]) is urgent, (name, value)
        aps = push["apns"]["payload"]["aps"]
        assert (aps.get("interruption-level") == "time-sensitive") is urgent, (name, value)
        if urgent:
            assert push["data"]["urgent"] == "1"
        # Still content-free: the urgent flag is the one thing added.
        assert set(push["data"]) <= {"v", "type", "mailbox", "unread", "urgent"}


def _sync_state(services: Any, public_id: str) -> str:
    with services.sessions() as db:
        return db.scalar(select(Mailbox.sync_state).where(Mailbox.public_id == public_id))
