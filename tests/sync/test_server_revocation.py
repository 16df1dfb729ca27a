"""IMAP and SMTP servers: a revoked certificate, or one whose revocation we cannot check,
ends the connection before any credential is sent (security audit, issue 13)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from backend.mail.imap import ImapEndpoint, ImapRefused, connect
from backend.mail.tls import client_context
from devtools.dovecot import DovecotServer
from devtools.pki import CertificateAuthority, make_ca
from tests.factories import create_dovecot_mailbox
from tests.support import wait_until
from tests.sync.support import RunningWorker, mail, subjects, sync_state


class TlsServer:
    """A real TLS server on loopback that completes handshakes and hangs up."""

    def __init__(self, ca: CertificateAuthority, directory: Path) -> None:
        self.certificate = ca.issue_server_cert()
        cert, key = self.certificate.write_pem(directory / "server.pem", with_chain=True)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            try:
                with self._context.wrap_socket(raw, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                raw.close()

    def __enter__(self) -> TlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self._thread.join(timeout=5)

    def handshake(self, context: ssl.SSLContext) -> str:
        """`ok`, or OpenSSL's reason for refusing the server's certificate."""
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="localhost"),
            ):
                return "ok"
        except ssl.SSLCertVerificationError as exc:
            return exc.verify_message


@pytest.fixture
def operator_ca() -> CertificateAuthority:
    return make_ca("TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS", organization="ASIP-SANTE")


@pytest.fixture
def tls_server(operator_ca, tmp_path: Path) -> Iterator[TlsServer]:
    with TlsServer(operator_ca, tmp_path) as server:
        yield server


def test_a_current_crl_from_the_issuer_lets_the_handshake_through(
    operator_ca, tls_server, tmp_path: Path
) -> None:
    bundle = operator_ca.write_cert(tmp_path / "ca.pem")
    crl = operator_ca.write_crl(tmp_path / "ca.crl", der=True)
    assert tls_server.handshake(client_context(bundle, crls=[crl])) == "ok"


def test_a_server_without_a_crl_for_its_issuer_is_refused(
    operator_ca, tls_server, tmp_path: Path
) -> None:
    bundle = operator_ca.write_cert(tmp_path / "ca.pem")
    assert "CRL" in tls_server.handshake(client_context(bundle, crls=[]))


def test_a_revoked_server_certificate_is_refused(operator_ca, tls_server, tmp_path) -> None:
    bundle = operator_ca.write_cert(tmp_path / "ca.pem")
    operator_ca.revoke(tls_server.certificate)
    crl = operator_ca.write_crl(tmp_path / "ca.crl")
    assert tls_server.handshake(client_context(bundle, crls=[crl])) == "certificate revoked"


def test_an_expired_crl_is_refused(operator_ca, tls_server, tmp_path: Path) -> None:
    bundle = operator_ca.write_cert(tmp_path / "ca.pem")
    now = dt.datetime.now(dt.UTC)
    stale = operator_ca.crl(
        last_update=now - dt.timedelta(days=8), next_update=now - dt.timedelta(minutes=1)
    )
    crl = tmp_path / "ca.crl"
    crl.write_bytes(stale.public_bytes(Encoding.PEM))
    assert tls_server.handshake(client_context(bundle, crls=[crl])) == "CRL has expired"


def test_a_crl_signed_by_another_key_is_refused(operator_ca, tls_server, tmp_path) -> None:
    bundle = operator_ca.write_cert(tmp_path / "ca.pem")
    impostor = make_ca("TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS", organization="ASIP-SANTE")
    crl = impostor.write_crl(tmp_path / "ca.crl")
    assert tls_server.handshake(client_context(bundle, crls=[crl])) != "ok"


def test_crls_configured_for_the_app_are_the_default(
    make_app, operator_ca, tls_server, tmp_path: Path
) -> None:

    bundle = operator_ca.write_cert(tmp_path / "ca.pem")
    crl = operator_ca.write_crl(tmp_path / "ca.crl")
    app = make_app(ESTAFETTE_CA_BUNDLE=str(bundle), ESTAFETTE_CRL=str(crl))
    try:
        assert tls_server.handshake(client_context(bundle)) == "ok"
        operator_ca.revoke(tls_server.certificate)
        operator_ca.write_crl(crl)
        assert tls_server.handshake(client_context(bundle)) == "certificate revoked"
    finally:
        app.extensions["estafette"].engine.dispose()


# -- against Dovecot ------------------------------------------------------------------


def _endpoint(server: DovecotServer, port: int) -> ImapEndpoint:
    return ImapEndpoint(
        address="nobody@chu-test.mssante.fr",
        host=server.host,
        port=port,
        security="tls",
        auth="password",
        username="nobody@chu-test.mssante.fr",
        secret="not-sent",
    )


def test_imap_and_smtp_refuse_a_dovecot_with_a_revoked_certificate(
    make_app, tmp_path: Path
) -> None:

    with DovecotServer(tmp_path / "revoked") as server:
        app = make_app(ESTAFETTE_CA_BUNDLE=str(server.ca_cert_path))
        services = app.extensions["estafette"]
        address, _password, public_id = create_dovecot_mailbox(services, server)
        with RunningWorker(services):
            server.deliver(address, mail("avant révocation"))
            wait_until(lambda: subjects(services, public_id) == ["avant révocation"], what="sync")

        assert server.server_certificate is not None
        server.ca.revoke(server.server_certificate)
        server.publish_crls()
        with pytest.raises(ImapRefused, match="certificate revoked"):
            connect(_endpoint(server, server.imaps_port), ca_bundle=server.ca_cert_path)
        if server.submission_enabled:
            from backend.mail import smtp

            endpoint = _endpoint(server, server.submissions_port)
            with (
                pytest.raises(smtp.SmtpRefused, match="certificate revoked"),
                smtp.connect(endpoint, ca_bundle=server.ca_cert_path),
            ):
                pass

        server.restart()  # drops the session opened before the revocation
        with RunningWorker(services):
            state = wait_until(
                lambda: (s := sync_state(services, public_id))[0] == "error" and s,
                what="the revocation error",
            )
        assert "revoked" in state[1]
        app.extensions["estafette"].engine.dispose()
