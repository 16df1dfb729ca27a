"""A client generated from the live OpenAPI document works, with methods named for what they
do: `openapi-python-client` builds it, and it signs in (password, TOTP enrolment, code),
lists mailboxes and messages, and reads a message, against `serve` and a real Dovecot."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from tests.e2e.gateway import Gateway
from tests.support import DEFAULT_PASSWORD, wait_until

pytestmark = pytest.mark.e2e

SUBJECT = "Compte rendu opératoire"
TEXT = "Suites simples, sortie prévue demain."


@pytest.fixture
def served(base_env, dovecot, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`serve` with one user owning one mailbox that holds one message: (base url, user)."""
    address = f"dr.{uuid.uuid4().hex[:8]}@chu-test.mssante.fr"
    imap_password = uuid.uuid4().hex
    dovecot.add_user(address, imap_password)
    message = EmailMessage()
    message["From"] = "Dr Claire Durand <claire.durand@ch-exemple.mssante.fr>"
    message["To"] = address
    message["Subject"] = SUBJECT
    message["X-MSS-NIL"] = "test"
    message.set_content(TEXT)
    dovecot.deliver(address, bytes(message))

    gateway = Gateway({**base_env, "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path)})
    gateway.cli("db", "upgrade")
    gateway.cli("users", "create", "bruno", "--password-stdin", stdin=DEFAULT_PASSWORD + "\n")
    gateway.add_owned_mailbox(address, imap_password, dovecot, "bruno")
    with gateway.serving(tmp_path / "serve.log") as base_url:
        yield base_url, "bruno"


def _generate(base_url: str, tmp_path: Path) -> Any:
    """Generate the client from the document the gateway serves, and import it."""
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(f"{base_url}/api/v1/openapi.json", timeout=10).content)
    package = f"estafette_client_{uuid.uuid4().hex[:8]}"
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / package),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(tmp_path))


def test_a_generated_python_client_signs_in_lists_and_reads_mail(served, tmp_path) -> None:
    base_url, username = served
    estafette = _generate(base_url, tmp_path)

    def call(path: str) -> Any:
        """A generated module: `api/<tag>/<operationId>.py`, as an app developer imports it."""
        return importlib.import_module(f"{estafette.__name__}.{path}")

    models = call("models")
    login = call("api.auth.auth_login")
    enroll = call("api.auth.auth_enroll")
    activate = call("api.auth.auth_activate")
    sign_in = call("api.auth.auth_sign_in_with_otp")
    list_mailboxes = call("api.mailboxes.mailboxes_list_mailboxes")
    list_messages = call("api.mailboxes.mailboxes_list_messages")
    get_message = call("api.messages.messages_get_message")

    anonymous = estafette.Client(base_url=base_url)
    refused = login.sync_detailed(
        client=anonymous, body=models.Login(username=username, password="not it")
    )
    assert refused.status_code == 401
    assert isinstance(refused.parsed, models.Problem)
    assert refused.parsed.code == "invalid_credentials"

    first = login.sync(
        client=anonymous, body=models.Login(username=username, password=DEFAULT_PASSWORD)
    )
    assert isinstance(first, models.LoginResult) and first.enrollment_required
    mfa = estafette.AuthenticatedClient(base_url=base_url, token=first.mfa_token)
    enrolment = enroll.sync(client=mfa)
    totp = pyotp.TOTP(enrolment.secret)
    activated = activate.sync(client=mfa, body=models.Code(code=totp.now()))
    assert isinstance(activated, models.ActivateResult)
    session = sign_in.sync(
        client=mfa,
        body=models.OtpSignIn(
            code=totp.at(time.time() + 30),  # the next step: the current one was just used
            device=models.DeviceIn(name="Tablette", platform=models.DeviceInPlatform.IOS),
        ),
    )
    assert isinstance(session, models.Session), session
    api = estafette.AuthenticatedClient(base_url=base_url, token=session.access_token)

    mailbox = wait_until(
        lambda: [m for m in list_mailboxes.sync(client=api) if m.sync.state == "ok"],
        timeout=30,
        what="the mailbox to be in sync",
    )[0]
    page = wait_until(
        lambda: (p := list_messages.sync(mailbox_id=mailbox.id, client=api)).items and p,
        timeout=30,
        what="the message to be listed",
    )
    assert isinstance(page, models.MessagePage)
    assert [envelope.subject for envelope in page.items] == [SUBJECT]
    assert page.items[0].from_.address == "claire.durand@ch-exemple.mssante.fr"

    message = get_message.sync(message_id=page.items[0].id, client=api)
    assert isinstance(message, models.Message)
    assert TEXT in message.text
    assert message.subject == SUBJECT
