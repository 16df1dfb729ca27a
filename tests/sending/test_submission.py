"""The SMTP side: STARTTLS or implicit TLS, the mailbox's auth mode, certificates checked."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.storage.models import Mailbox
from devtools.pki import make_ca
from tests.factories import unique
from tests.messages.support import audit_rows
from tests.sending.support import Doctor
from tests.support import body


def test_implicit_tls_submission_delivers(http, dovecot_services, dovecot, bob) -> None:
    carol = Doctor.create(http, dovecot_services, dovecot, smtp_security="tls")

    sent = carol.sent(to=[bob.address])

    assert bob.find("INBOX", sent["message_id"]) is not None


def test_master_user_submission_sends_as_the_mailbox(http, dovecot_services, dovecot, bob) -> None:
    secretariat = Doctor.create(http, dovecot_services, dovecot, smtp_auth="master")

    sent = secretariat.sent(to=[bob.address])

    message, _flags = bob.find("INBOX", sent["message_id"])
    assert message["From"].addresses[0].addr_spec == secretariat.address


def test_an_app_mailbox_submits_with_its_p12_certificate_and_sasl_external(
    http, dovecot_services, dovecot, bob
) -> None:
    address = f"{unique('lgc.')}@chu-test.mssante.fr"
    p12 = dovecot.ca.issue_client_cert(f"CN={address},O=Clinique des Tests").to_pkcs12(b"p12-pass")
    app = Doctor.create(
        http, dovecot_services, dovecot, kind="APP", address=address, p12=(p12, "p12-pass")
    )

    sent = app.sent(to=[bob.address])

    message, _flags = bob.find("INBOX", sent["message_id"])
    assert message["From"].addresses[0].addr_spec == address
    assert app.find("Sent", sent["message_id"]) is not None


@pytest.fixture
def rogue_tls_server(tmp_path: Path, dovecot) -> Iterator[int]:
    """A TLS listener whose certificate comes from a CA we do not trust (not IGC Santé)."""
    cert, key = (
        make_ca("Rogue CA")
        .issue_server_cert(ip_addresses=[dovecot.host])
        .write_pem(tmp_path / "rogue.pem")
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server((dovecot.host, 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _peer = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"220 rogue ESMTP\r\n")
            except (OSError, ssl.SSLError):
                pass  # the client hung up on our certificate: that is the point

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_an_untrusted_smtp_certificate_is_an_error_and_nothing_is_sent(
    http, dovecot_services, dovecot, bob, rogue_tls_server
) -> None:
    mallory = Doctor.create(
        http, dovecot_services, dovecot, smtp_security="tls", smtp_port=rogue_tls_server
    )

    response = mallory.send(to=[bob.address], subject="jamais")

    assert response.status_code == 502
    assert body(response)["code"] == "send_failed"
    assert bob.folder_messages("INBOX") == []
    assert mallory.folder_messages("Sent") == []
    [record] = audit_rows(dovecot_services, "message.send")
    assert record.outcome == "failed"


def test_an_unreachable_smtp_server_is_reported_not_lost(
    http, dovecot_services, dovecot, bob, caplog
) -> None:
    with socket.socket() as probe:
        probe.bind((dovecot.host, 0))
        closed_port = probe.getsockname()[1]
    doctor = Doctor.create(http, dovecot_services, dovecot, smtp_port=closed_port)

    response = doctor.send(to=[bob.address])

    assert response.status_code == 503
    assert body(response)["code"] == "mailbox_unavailable"
    assert doctor.folder_messages("Sent") == []
    [record] = audit_rows(dovecot_services, "message.send")
    assert record.outcome == "failed"
    assert '"code":"mailbox_unavailable"' in record.details
    assert "send failed" in caplog.text
    assert bob.address not in caplog.text, "logs name no correspondent"


def test_refused_smtp_credentials_are_a_send_failure_and_nothing_is_kept(
    http, dovecot_services, dovecot, bob
) -> None:
    doctor = Doctor.create(http, dovecot_services, dovecot)
    with dovecot_services.sessions() as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == doctor.mailbox_id))
        mailbox.smtp_secret = "not-the-password"
        db.commit()

    response = doctor.send(to=[bob.address])

    assert response.status_code == 502
    assert body(response)["code"] == "send_failed"
    assert doctor.folder_messages("Sent") == []
    assert bob.folder_messages("INBOX") == []
