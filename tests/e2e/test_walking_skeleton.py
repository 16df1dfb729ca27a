"""The whole path once, as separate processes: CLI, `serve`, Dovecot, IDLE, FCM, the API.

An operator creates a user and a PER mailbox with the command line; `serve` runs the
embedded gateway; a message is delivered over LMTP; the sync worker sees it through IDLE;
the local FCM server receives a content-free push; the app lists the message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.support import Authenticator, bearer, free_port, wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


class Gateway:
    """Runs `flask --app mobile_api ...` commands with one environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}

    def cli(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "mobile_api", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=ROOT,
            timeout=60,
        )
        assert result.returncode == 0, f"{args[:2]} failed: {result.stderr}"
        return result.stdout

    def serve(self, port: int, log_path: Path) -> subprocess.Popen:
        log = log_path.open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "mobile_api", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
        )


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
    gateway.cli(
        "mailboxes",
        "create",
        address,
        "--kind",
        "PER",
        "--imap-host",
        dovecot.host,
        "--imap-port",
        str(dovecot.imaps_port),
        "--security",
        "tls",
        "--auth",
        "password",
        "--secret-stdin",
        stdin=imap_password + "\n",
    )
    gateway.cli("mailboxes", "grant", address, "alice", "--role", "owner")

    port = free_port()
    server = gateway.serve(port, tmp_path / "serve.log")
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

        def ready() -> bool:
            try:
                return http.get("/readyz").status_code == 200
            except httpx.TransportError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                return False

        wait_until(ready, timeout=30, what="the gateway to be ready")
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
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
