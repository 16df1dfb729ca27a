"""Proves that the throwaway Dovecot (devtools.dovecot) behaves like an operator.

Every test gets its own instance: start() takes well under a second, and a
fresh server keeps restarts, revocations and deliveries from leaking between
tests.
"""

from __future__ import annotations

import datetime as dt
import json
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from devtools.dovecot import (
    DeliveryError,
    DovecotError,
    DovecotServer,
    _process_group_members,
)
from devtools.pki import IssuedCertificate, load_pkcs12, make_ca

PASSWORDS = {
    "alice@example.org": "alice-secret",
    "bob@example.org": "bob-secret",
    "app@example.org": "app-secret",
}
IDLE_DEADLINE = 10.0  # DESIGN.md: about 0.5 s is expected, 10 s means broken


# --------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------


class FakeIntrospection:
    """A local RFC 7662 endpoint: Dovecot's oauth2 passdb POSTs tokens here."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                token = parse_qs(self.rfile.read(length).decode()).get("token", [""])[0]
                outer.requests.append(token)
                user = outer.tokens.get(token)
                answer = {"active": True, "username": user} if user else {"active": False}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/introspect"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def introspection() -> Iterator[FakeIntrospection]:
    endpoint = FakeIntrospection()
    yield endpoint
    endpoint.close()


@pytest.fixture
def server(tmp_path: Path, introspection: FakeIntrospection) -> Iterator[DovecotServer]:
    instance = DovecotServer(tmp_path / "dovecot", oauth2_introspection_url=introspection.url)
    for username, password in PASSWORDS.items():
        instance.add_user(username, password)
    with instance:
        yield instance


def connect(
    server: DovecotServer, *, cert: IssuedCertificate | None = None, starttls: bool = False
) -> IMAPClient:
    """IMAPS (or plain + later STARTTLS) that trusts only the harness CA."""
    if starttls:
        return IMAPClient(server.host, server.imap_port, ssl=False, timeout=15)
    context = ssl.create_default_context(cafile=str(server.ca_cert_path))
    if cert is not None:
        context = server.client_ssl_context(cert)
    return IMAPClient(server.host, server.imaps_port, ssl_context=context, timeout=15)


def login(server: DovecotServer, username: str) -> IMAPClient:
    client = connect(server)
    client.login(username, PASSWORDS[username])
    return client


def authenticate_external(client: IMAPClient) -> None:
    """SASL EXTERNAL with an empty authorization identity (imapclient has no helper)."""
    client._imap.authenticate("EXTERNAL", lambda _challenge: b"")


def make_message(subject: str) -> bytes:
    return (
        "From: sender@mssante.example\r\nTo: someone@example.org\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nHello.\r\n"
    ).encode()


def subjects_in_inbox(client: IMAPClient) -> list[bytes]:
    client.select_folder("INBOX", readonly=True)
    uids = client.search("ALL")
    envelopes = client.fetch(uids, ["ENVELOPE"]) if uids else {}
    return [data[b"ENVELOPE"].subject for data in envelopes.values()]


def wait_for_idle_response(client: IMAPClient, kind: bytes, timeout: float) -> list[tuple]:
    """Collect IDLE responses until one of `kind` arrives, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    seen: list[tuple] = []
    while (remaining := deadline - time.monotonic()) > 0:
        responses = client.idle_check(timeout=remaining)
        seen.extend(responses)
        if any(len(r) > 1 and r[1] == kind for r in responses):
            return seen
    raise AssertionError(f"no untagged {kind!r} within {timeout}s, got {seen}")


def wait_for_bye(client: IMAPClient, timeout: float) -> list[tuple]:
    """Collect IDLE responses until the server says BYE, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    seen: list[tuple] = []
    while (remaining := deadline - time.monotonic()) > 0:
        responses = client.idle_check(timeout=remaining)
        seen.extend(responses)
        if any(r and r[0] == b"BYE" for r in responses):
            return seen
    raise AssertionError(f"no BYE within {timeout}s, got {seen}")


# --------------------------------------------------------------------------
# TLS and password logins
# --------------------------------------------------------------------------


@pytest.mark.dovecot
def test_imaps_password_login_verifies_server_against_harness_ca(
    server: DovecotServer,
) -> None:
    context = ssl.create_default_context(cafile=str(server.ca_cert_path))
    client = IMAPClient(server.host, server.imaps_port, ssl_context=context, timeout=15)
    assert client.login("alice@example.org", "alice-secret") == b"Logged in"
    client.logout()


@pytest.mark.dovecot
def test_imaps_server_is_not_trusted_without_harness_ca(server: DovecotServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(server.host, server.imaps_port, ssl_context=ssl.create_default_context())


@pytest.mark.dovecot
def test_wrong_password_is_refused(server: DovecotServer) -> None:
    client = connect(server)
    with pytest.raises(LoginError):
        client.login("alice@example.org", "not-her-password")


@pytest.mark.dovecot
def test_plain_port_refuses_login_before_starttls(server: DovecotServer) -> None:
    client = connect(server, starttls=True)
    capabilities = client.capabilities()
    assert b"STARTTLS" in capabilities
    assert b"LOGINDISABLED" in capabilities
    with pytest.raises(IMAPClientError):
        client.login("alice@example.org", "alice-secret")


@pytest.mark.dovecot
def test_starttls_upgrade_allows_login(server: DovecotServer) -> None:
    client = connect(server, starttls=True)
    client.starttls(ssl.create_default_context(cafile=str(server.ca_cert_path)))
    assert client.login("alice@example.org", "alice-secret") == b"Logged in"
    client.logout()


@pytest.mark.dovecot
def test_capabilities_needed_by_the_gateway_are_advertised(server: DovecotServer) -> None:
    client = login(server, "alice@example.org")
    capabilities = set(client.capabilities())
    assert {b"IDLE", b"CONDSTORE", b"QRESYNC", b"UIDPLUS", b"MOVE", b"SPECIAL-USE"} <= capabilities
    client.logout()


@pytest.mark.dovecot
def test_special_use_mailboxes_are_created_and_subscribed(server: DovecotServer) -> None:
    client = login(server, "bob@example.org")
    subscribed = {name for _flags, _sep, name in client.list_sub_folders()}
    assert {"INBOX", "Drafts", "Sent", "Trash"} <= subscribed
    assert client.find_special_folder(b"\\Sent") == "Sent"
    assert client.find_special_folder(b"\\Trash") == "Trash"
    assert client.find_special_folder(b"\\Drafts") == "Drafts"
    client.logout()


@pytest.mark.dovecot
def test_user_added_while_running_can_log_in(server: DovecotServer) -> None:
    server.add_user("carol@example.org", "carol-secret")
    client = connect(server)
    assert client.login("carol@example.org", "carol-secret") == b"Logged in"
    client.logout()


# --------------------------------------------------------------------------
# Master user
# --------------------------------------------------------------------------


@pytest.mark.dovecot
def test_master_user_with_separator_opens_target_mailbox(server: DovecotServer) -> None:
    server.deliver("bob@example.org", make_message("for-bob-only"))
    client = connect(server)
    client.login(f"bob@example.org*{server.master_user}", server.master_password)
    assert subjects_in_inbox(client) == [b"for-bob-only"]
    client.logout()


@pytest.mark.dovecot
def test_master_user_sasl_plain_authzid_opens_target_mailbox(server: DovecotServer) -> None:
    server.deliver("bob@example.org", make_message("plain-authzid"))
    client = connect(server)
    client.plain_login(server.master_user, server.master_password, "bob@example.org")
    assert subjects_in_inbox(client) == [b"plain-authzid"]
    client.logout()


@pytest.mark.dovecot
def test_master_user_cannot_open_unknown_mailbox(server: DovecotServer) -> None:
    client = connect(server)
    with pytest.raises(LoginError):
        client.login(f"ghost@example.org*{server.master_user}", server.master_password)


# --------------------------------------------------------------------------
# Delivery and IDLE
# --------------------------------------------------------------------------


@pytest.mark.dovecot
def test_lmtp_delivery_lands_in_inbox(server: DovecotServer) -> None:
    server.deliver("alice@example.org", make_message("first-delivery"))
    client = login(server, "alice@example.org")
    assert subjects_in_inbox(client) == [b"first-delivery"]
    client.logout()


@pytest.mark.dovecot
def test_lmtp_refuses_unknown_recipient(server: DovecotServer) -> None:
    with pytest.raises(DeliveryError, match=r"ghost@example\.org"):
        server.deliver("ghost@example.org", make_message("nobody-home"))


@pytest.mark.dovecot
def test_idle_sees_exists_after_lmtp_delivery(server: DovecotServer) -> None:
    client = login(server, "alice@example.org")
    client.select_folder("INBOX")
    client.idle()
    server.deliver("alice@example.org", make_message("while-idling"))
    responses = wait_for_idle_response(client, b"EXISTS", IDLE_DEADLINE)
    client.idle_done()
    assert (1, b"EXISTS") in responses
    client.logout()


# --------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------


@pytest.mark.dovecot
def test_restart_keeps_ports_and_mail_and_drops_idlers(server: DovecotServer) -> None:
    server.deliver("alice@example.org", make_message("before-restart"))
    ports = (server.imaps_port, server.imap_port, server.lmtp_port)
    idler = login(server, "alice@example.org")
    uidvalidity = idler.select_folder("INBOX")[b"UIDVALIDITY"]
    idler.idle()

    server.restart()

    # The old session is gone: finishing IDLE hits the closed connection.
    with pytest.raises((IMAPClientAbortError, OSError)):
        idler.idle_done()
    assert (server.imaps_port, server.imap_port, server.lmtp_port) == ports
    client = login(server, "alice@example.org")
    assert client.select_folder("INBOX")[b"UIDVALIDITY"] == uidvalidity
    assert subjects_in_inbox(client) == [b"before-restart"]
    client.logout()


@pytest.mark.dovecot
def test_graceful_restart_says_bye_to_idlers(server: DovecotServer) -> None:
    idler = login(server, "alice@example.org")
    idler.select_folder("INBOX")
    idler.idle()

    server.restart(graceful=True)

    assert (b"BYE", b"Server", b"shutting", b"down.") in wait_for_bye(idler, timeout=5)
    assert login(server, "alice@example.org").select_folder("INBOX")[b"EXISTS"] == 0


@pytest.mark.dovecot
def test_stop_leaves_no_dovecot_process(server: DovecotServer) -> None:
    client = login(server, "alice@example.org")  # so that an imap process exists
    client.select_folder("INBOX")
    pgid = server.pid
    assert pgid is not None
    assert len(_process_group_members(pgid)) > 1

    server.stop()

    assert _process_group_members(pgid) == []
    assert not server.running


@pytest.mark.dovecot
def test_start_failure_reports_dovecot_log(server: DovecotServer) -> None:
    server.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((server.host, server.imaps_port))
        squatter.listen()
        with pytest.raises(DovecotError, match="Address already in use"):
            server.start()
    assert not server.running


@pytest.mark.dovecot
def test_a_fresh_port_taken_before_dovecot_binds_it_is_chosen_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process may take a port between our asking and Dovecot's bind: a first
    start then chooses its ports again (a restart keeps them: the test above)."""
    import devtools.dovecot.server as server_module

    real_free_ports = server_module._free_ports
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        asked: list[list[int]] = []

        def first_one_taken(host: str, count: int) -> list[int]:
            ports = real_free_ports(host, count)
            if not asked:
                ports[1] = taken  # IMAPS, as if someone bound it in between
            asked.append(ports)
            return ports

        monkeypatch.setattr(server_module, "_free_ports", first_one_taken)
        instance = DovecotServer(tmp_path / "dovecot", host="127.0.0.1")
        try:
            instance.start()
            assert instance.running and instance.imaps_port != taken
            assert len(asked) == 2
        finally:
            instance.stop()


def test_missing_binary_error_names_packages(tmp_path: Path) -> None:
    instance = DovecotServer(tmp_path / "dovecot", binary=tmp_path / "no-dovecot")
    with pytest.raises(DovecotError, match="apt-get install dovecot-imapd dovecot-lmtpd"):
        instance.start()


# --------------------------------------------------------------------------
# Client certificates (SASL EXTERNAL)
# --------------------------------------------------------------------------


@pytest.mark.dovecot
def test_external_login_with_client_certificate(server: DovecotServer) -> None:
    cert = server.ca.issue_client_cert("CN=app@example.org,O=Clinique des Tests")
    client = connect(server, cert=cert)
    authenticate_external(client)
    client.select_folder("INBOX")
    client.logout()


@pytest.mark.dovecot
@pytest.mark.parametrize("problem", ["revoked", "expired", "foreign-ca", "unknown-user"])
def test_external_login_refused_for_bad_certificate(server: DovecotServer, problem: str) -> None:
    ca = make_ca("Not The Operator CA") if problem == "foreign-ca" else server.ca
    cn = "ghost@example.org" if problem == "unknown-user" else "app@example.org"
    now = dt.datetime.now(dt.UTC)
    validity = {"not_after": now - dt.timedelta(days=1)} if problem == "expired" else {}
    cert = ca.issue_client_cert(f"CN={cn}", **validity)
    if problem == "revoked":
        server.ca.revoke(cert)
        server.restart()  # the CRL is re-read at start
    client = connect(server, cert=cert)
    with pytest.raises(IMAPClientError):
        authenticate_external(client)


# --------------------------------------------------------------------------
# XOAUTH2
# --------------------------------------------------------------------------


@pytest.mark.dovecot
def test_xoauth2_login_with_introspected_token(
    server: DovecotServer, introspection: FakeIntrospection
) -> None:
    introspection.tokens["token-alice"] = "alice@example.org"
    client = connect(server)
    client.oauth2_login("alice@example.org", "token-alice")
    client.select_folder("INBOX")
    assert introspection.requests == ["token-alice"]
    client.logout()


@pytest.mark.dovecot
@pytest.mark.parametrize("token", ["token-unknown", "token-of-bob"])
def test_xoauth2_refuses_inactive_or_foreign_token(
    server: DovecotServer, introspection: FakeIntrospection, token: str
) -> None:
    introspection.tokens["token-of-bob"] = "bob@example.org"
    client = connect(server)
    with pytest.raises(IMAPClientError):
        client.oauth2_login("alice@example.org", token)


# --------------------------------------------------------------------------
# Submission
# --------------------------------------------------------------------------


@pytest.mark.dovecot
def test_submission_relays_and_delivers_to_local_inbox(server: DovecotServer) -> None:
    if server.submission_port is None:
        pytest.fail("dovecot-submissiond is not installed (make system-deps installs it)")
    context = ssl.create_default_context(cafile=str(server.ca_cert_path))
    with smtplib.SMTP(server.host, server.submission_port, timeout=15) as smtp:
        smtp.starttls(context=context)
        smtp.login("alice@example.org", "alice-secret")
        smtp.sendmail(
            "alice@example.org",
            ["bob@example.org", "dr.who@other.mssante.example"],
            make_message("via-submission"),
        )
    [relayed] = server.relayed
    assert relayed.recipients == ("bob@example.org", "dr.who@other.mssante.example")
    client = login(server, "bob@example.org")
    assert subjects_in_inbox(client) == [b"via-submission"]
    client.logout()


@pytest.mark.dovecot
def test_submission_refuses_auth_before_starttls(server: DovecotServer) -> None:
    if server.submission_port is None:
        pytest.fail("dovecot-submissiond is not installed (make system-deps installs it)")
    with smtplib.SMTP(server.host, server.submission_port, timeout=15) as smtp:
        smtp.ehlo()
        assert "auth" not in smtp.esmtp_features
        assert smtp.has_extn("starttls")


# --------------------------------------------------------------------------
# The throwaway PKI itself
# --------------------------------------------------------------------------


def test_cps_like_certificate_has_professional_id_and_chosen_validity() -> None:
    root = make_ca("Fake IGC Sante Racine")
    issuing = root.issue_intermediate("Fake AC Elementaire Personnes")
    not_before = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    not_after = dt.datetime(2028, 1, 1, tzinfo=dt.UTC)
    card = issuing.issue_client_cert(
        "CN=Dr Alice Martin,serialNumber=899700000001,O=CHU Test",
        not_before=not_before,
        not_after=not_after,
        key_type="rsa",
    )
    professional_id = card.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    assert professional_id[0].value == "899700000001"
    assert card.certificate.not_valid_before_utc == not_before
    assert card.certificate.not_valid_after_utc == not_after
    assert card.certificate.issuer == issuing.name
    assert [c.subject for c in card.chain] == [issuing.name, root.name]


def test_pkcs12_export_round_trips_with_password() -> None:
    ca = make_ca("P12 CA")
    cert = ca.issue_client_cert("CN=app@example.org")
    loaded = load_pkcs12(cert.to_pkcs12(b"p12-password"), b"p12-password")
    assert loaded.certificate == cert.certificate
    assert loaded.chain == (ca.certificate,)
    with pytest.raises(ValueError):
        load_pkcs12(cert.to_pkcs12(b"p12-password"), b"wrong")


def test_crl_lists_revoked_serials_only() -> None:
    ca = make_ca("CRL CA")
    lost, kept = ca.issue_client_cert("CN=lost"), ca.issue_client_cert("CN=kept")
    ca.revoke(lost)
    crl = ca.crl()
    assert crl.is_signature_valid(ca.private_key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(lost.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number >= 1
