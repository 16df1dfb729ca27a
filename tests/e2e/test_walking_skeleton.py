"""The whole path once, as separate processes: CLI, `serve`, Dovecot, IDLE, FCM, the API.

An operator creates a user and a PER mailbox with the command line; `serve` runs the
embedded gateway; a message is delivered over LMTP; the sync worker sees it through IDLE;
the local FCM server receives a content-free push; the app lists the message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.e2e.gateway import Gateway
from tests.support import Authenticator, bearer, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def gateway(base_env, dovecot, fcm_credentials, fake_fcm, tmp_path) -> Iterator[Gateway]:
    env = {
        **base_env,
        "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path),
        "ESTAFETTE_FCM_CREDENTIALS": str(fcm_credentials),
        "ESTAFETTE_FCM_ENDPOINT": fake_fcm.base_url,
    }
    yield Gateway(env)


def _message(subject: str, recipient: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Dr Claire Durand <claire.durand@ch-exemple.mssante.fr>"
    message["To"] = recipient
    message["Subject"] = subject
    message["X-MSS-NIL"] = "test"
    message.set_content("Compte rendu de consultation.")
    return bytes(message)


def test_a_delivered_message_is_pushed_without_content_and_listed_for_the_owner(
    gateway: Gateway, dovecot, fake_fcm, tmp_path: Path
) -> None:
    address = f"dr.{uuid.uuid4().hex[:8]}@chu-test.mssante.fr"
    imap_password = uuid.uuid4().hex
    dovecot.add_user(address, imap_password)

    gateway.cli("db", "upgrade")
    gateway.cli(
        "users", "create", "alice", "--password-stdin", stdin="correct horse battery staple\n"
    )
    gateway.add_owned_mailbox(address, imap_password, dovecot, "alice")

    with gateway.serving(tmp_path / "serve.log") as base_url:
        http = httpx.Client(base_url=base_url, timeout=10)
        session = Authenticator().sign_in(
            http,
            "alice",
            device={"name": "Pixel de garde", "platform": "android", "push_token": "tok-alice"},
        )
        auth = bearer(session["access_token"])

        mailbox = wait_until(
            lambda: [
                m
                for m in http.get("/api/v1/mailboxes", headers=auth).json()
                if m["sync"]["state"] == "ok"
            ],
            timeout=30,
            what="the mailbox to be in sync",
        )[0]
        assert mailbox["address"] == address and mailbox["kind"] == "PER"

        subject = f"Résultats biologiques {uuid.uuid4().hex[:6]}"
        dovecot.deliver(address, _message(subject, address))

        pushes = fake_fcm.wait_for(
            lambda reqs: [r for r in reqs if r.token == "tok-alice"], timeout=20
        )
        push = next(r for r in pushes if r.token == "tok-alice")
        assert push.data == {"v": "1", "type": "mail.new", "mailbox": mailbox["id"], "unread": "1"}
        wire = str(push.body)
        for secret in (subject, "Durand", address, "claire"):
            assert secret not in wire

        listing = http.get(f"/api/v1/mailboxes/{mailbox['id']}/messages", headers=auth).json()
        assert [item["subject"] for item in listing["items"]] == [subject]
        assert listing["items"][0]["from"]["address"] == "claire.durand@ch-exemple.mssante.fr"
        assert listing["next"] is None
