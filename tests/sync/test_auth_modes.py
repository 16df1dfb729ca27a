"""Every MSSanté IMAP auth mode, created with the operator CLI and synced from real Dovecot.

`password` is covered by test_idle_sync.py; here: `master` (SASL PLAIN with an authorization
identity), `certificate` (a .p12 client certificate + SASL EXTERNAL, APP mailboxes) and
`xoauth2` (a bearer token from a client-credentials grant, checked by Dovecot's oauth2
passdb against an introspection endpoint).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from backend.storage.models import Mailbox
from devtools.dovecot import DovecotServer
from tests.conftest import running_dovecot
from tests.support import wait_until
from tests.sync.oauth_server import FakeOAuth
from tests.sync.support import RunningWorker, mail, outbox_count, subjects, sync_state

P12_PASSPHRASE = "phrase de passe du .p12"


@pytest.fixture(scope="module")
def oauth() -> Iterator[FakeOAuth]:
    server = FakeOAuth()
    yield server
    server.close()


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory, oauth: FakeOAuth) -> Iterator[DovecotServer]:
    """A Dovecot offering every mechanism: PLAIN (+ master user), EXTERNAL, XOAUTH2."""
    server = DovecotServer(
        tmp_path_factory.mktemp("operator"),
        oauth2_introspection_url=oauth.introspection_url,
        max_connections=100,
    )
    with running_dovecot(server) as started:
        yield started


@pytest.fixture
def gateway(make_app, operator):
    app = make_app(ESTAFETTE_CA_BUNDLE=str(operator.ca_cert_path), ESTAFETTE_SYNC_LEASE_SECONDS="6")
    yield app
    app.extensions["estafette"].engine.dispose()


@pytest.fixture
def services_(gateway):
    return gateway.extensions["estafette"]


def new_address(operator: DovecotServer) -> str:
    address = f"dr.{uuid.uuid4().hex[:8]}@chu-test.mssante.fr"
    operator.add_user(address, uuid.uuid4().hex)  # a password Estafette never learns
    return address


def cli_create(gateway, operator: DovecotServer, address: str, *options: str, stdin: str) -> str:
    """`flask mailboxes create` as an operator types it; returns the mailbox's public id."""
    result = gateway.test_cli_runner().invoke(
        args=[
            "mailboxes",
            "create",
            address,
            "--imap-host",
            operator.host,
            "--imap-port",
            str(operator.imaps_port),
            "--security",
            "tls",
            *options,
        ],
        input=stdin,
    )
    assert result.exit_code == 0, result.output
    return result.output.rsplit("(", 1)[1].rstrip(")\n")


def cli_create_xoauth2(
    gateway, operator: DovecotServer, oauth: FakeOAuth, *, secret: str | None = None
) -> tuple[str, str, str]:
    """A PER mailbox with an OAuth2 client of its own: (address, client id, mailbox id).

    `secret`, when given, is stored instead of the client's real one (a client refused).
    """
    address = new_address(operator)
    client_id, client_secret = oauth.add_client(address)
    public_id = cli_create(
        gateway,
        operator,
        address,
        *("--kind", "PER", "--auth", "xoauth2"),
        *("--token-url", oauth.token_url, "--client-id", client_id),
        "--secret-stdin",
        stdin=(secret or client_secret) + "\n",
    )
    return address, client_id, public_id


def assert_syncs(services, operator: DovecotServer, address: str, public_id: str) -> None:
    """The worker logs in, imports, and announces what arrives afterwards."""
    operator.deliver(address, mail("avant"))
    with RunningWorker(services):
        wait_until(lambda: sync_state(services, public_id)[0] == "ok", what="the login")
        wait_until(lambda: subjects(services, public_id) == ["avant"], what="the import")
        operator.deliver(address, mail("après"))
        wait_until(lambda: "après" in subjects(services, public_id), what="IDLE to see it")
    assert outbox_count(services, public_id) == 1


def test_a_master_user_opens_the_mailbox_with_sasl_plain_and_an_authorization_identity(
    gateway, services_, operator
) -> None:
    address = new_address(operator)
    public_id = cli_create(
        gateway,
        operator,
        address,
        *("--kind", "ORG", "--auth", "master", "--username", operator.master_user),
        "--secret-stdin",
        stdin=operator.master_password + "\n",
    )
    assert_syncs(services_, operator, address, public_id)


def test_an_app_mailbox_logs_in_with_its_p12_client_certificate_and_sasl_external(
    gateway, services_, operator, tmp_path: Path
) -> None:
    address = new_address(operator)
    p12 = operator.ca.issue_client_cert(f"CN={address},O=Clinique des Tests").to_pkcs12(
        P12_PASSPHRASE.encode()
    )
    (tmp_path / "app.p12").write_bytes(p12)
    public_id = cli_create(
        gateway,
        operator,
        address,
        *("--kind", "APP", "--auth", "certificate", "--certificate", str(tmp_path / "app.p12")),
        "--secret-stdin",
        stdin=P12_PASSPHRASE + "\n",
    )
    with services_.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT imap_certificate, imap_secret FROM mailboxes WHERE public_id = :p"),
            {"p": public_id},
        ).one()
    assert p12 not in bytes(stored[0]), "the .p12 must be encrypted at rest"
    assert P12_PASSPHRASE.encode() not in bytes(stored[1])
    assert_syncs(services_, operator, address, public_id)


def test_an_xoauth2_mailbox_logs_in_with_a_token_from_the_client_credentials_grant(
    gateway, services_, operator, oauth: FakeOAuth
) -> None:
    address, client_id, public_id = cli_create_xoauth2(gateway, operator, oauth)
    assert_syncs(services_, operator, address, public_id)
    assert client_id in oauth.token_requests
    tokens_for_mailbox = [t for t, user in oauth.issued.items() if user == address]
    assert set(tokens_for_mailbox) & set(oauth.introspected), "Dovecot checked our token"


def test_a_token_endpoint_that_refuses_the_client_is_a_sync_error_with_the_reason(
    gateway, services_, operator, oauth: FakeOAuth
) -> None:
    _address, _client_id, public_id = cli_create_xoauth2(
        gateway, operator, oauth, secret="not-the-client-secret"
    )
    with RunningWorker(services_):
        state = wait_until(
            lambda: (s := sync_state(services_, public_id))[0] == "error" and s,
            what="the refusal on the mailbox",
        )
    assert "invalid_client" in state[1]


def test_a_p12_whose_passphrase_is_wrong_is_refused_at_creation(
    gateway, services_, operator, tmp_path: Path
) -> None:
    address = new_address(operator)
    p12 = operator.ca.issue_client_cert(f"CN={address}").to_pkcs12(P12_PASSPHRASE.encode())
    (tmp_path / "app.p12").write_bytes(p12)
    result = gateway.test_cli_runner().invoke(
        args=[
            *("mailboxes", "create", address, "--kind", "APP", "--imap-host", operator.host),
            *("--imap-port", str(operator.imaps_port), "--security", "tls"),
            *("--auth", "certificate", "--certificate", str(tmp_path / "app.p12")),
            "--secret-stdin",
        ],
        input="wrong\n",
    )
    assert result.exit_code != 0
    assert "passphrase" in result.output
    with services_.sessions() as db:
        assert db.scalar(select(Mailbox).where(Mailbox.address == address)) is None


def test_xoauth2_without_a_token_endpoint_is_a_usage_error(gateway) -> None:
    result = gateway.test_cli_runner().invoke(
        args=[
            *("mailboxes", "create", "x@chu-test.mssante.fr", "--kind", "PER"),
            *("--imap-host", "imap.example", "--imap-port", "993", "--security", "tls"),
            *("--auth", "xoauth2", "--secret-stdin"),
        ],
        input="client-secret\n",
    )
    assert result.exit_code != 0
    assert "--token-url" in result.output


def test_an_xoauth2_token_is_reused_across_reconnects_and_replaced_once_refused(
    gateway, services_, operator, oauth: FakeOAuth
) -> None:
    address, client_id, public_id = cli_create_xoauth2(gateway, operator, oauth)

    def token_requests() -> int:
        return oauth.token_requests.count(client_id)

    def reconnected_after(kick) -> None:
        kick()
        wait_until(lambda: sync_state(services_, public_id)[0] != "ok", what="the drop")
        wait_until(lambda: sync_state(services_, public_id)[0] == "ok", what="the reconnect")

    with RunningWorker(services_):
        wait_until(lambda: sync_state(services_, public_id)[0] == "ok", what="the login")
        assert token_requests() == 1
        reconnected_after(lambda: operator.doveadm("kick", address))
        assert token_requests() == 1, "a still valid token is not fetched again"

        def revoke_and_kick() -> None:
            for token in [t for t, user in oauth.issued.items() if user == address]:
                del oauth.issued[token]  # the provider revoked it early
            operator.doveadm("kick", address)

        reconnected_after(revoke_and_kick)
        assert token_requests() == 2, "a refused token is replaced by a fresh one"
