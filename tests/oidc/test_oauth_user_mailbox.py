"""An `oauth_user` mailbox reaches IMAP and SMTP with its owner's own PSC access token,
checked by Dovecot's oauth2 passdb at the provider's introspection endpoint. The token is
refreshed before it expires; when the provider refuses the refresh, the mailbox waits in
`reauth_required` and its owner gets a content-free `auth.required` push; after a new
sign-in it catches up."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from backend.accounts import users
from backend.mailboxes import registry
from backend.storage.database import session_scope
from backend.storage.models import OidcIdentity
from devtools.dovecot import DovecotServer
from devtools.oidc_provider import OidcProvider
from tests.conftest import running_dovecot
from tests.factories import unique
from tests.oidc.support import IDP_CLIENT, PSC_CLIENT, professional, psc_claims
from tests.support import bearer, body, wait_until
from tests.sync.support import RunningWorker, mail, outbox_count, subjects, sync_state

DOVECOT_CLIENT = "dovecot-introspection"
DOVECOT_SECRET = secrets.token_urlsafe(24)
# Shorter than the gateway's refresh margin: every login refreshes the token first.
ACCESS_TOKEN_SECONDS = 30


@pytest.fixture(scope="module")
def oidc_provider(tmp_path_factory, client_secrets: dict) -> Iterator[OidcProvider]:
    def client(client_id: str, name: str) -> dict:
        return {
            "client_id": client_id,
            "client_secret": client_secrets[client_id],
            "redirect_uris": [f"http://localhost/api/v1/auth/oidc/{name}/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }

    provider = OidcProvider(
        tmp_path_factory.mktemp("oidc-provider-mail"),
        clients=[
            client(PSC_CLIENT, "psc"),
            client(IDP_CLIENT, "idp"),
            {
                "client_id": DOVECOT_CLIENT,
                "client_secret": DOVECOT_SECRET,
                "redirect_uris": [],
                "grant_types": [],
                "response_types": [],
            },
        ],
        accounts={},
        access_token_seconds=ACCESS_TOKEN_SECONDS,
    )
    with provider:
        yield provider


@pytest.fixture(scope="module")
def operator(tmp_path_factory, oidc_provider: OidcProvider) -> Iterator[DovecotServer]:
    """Dovecot accepting exactly the access tokens the provider issued for the mailbox."""
    introspection = oidc_provider.issuer.replace(
        "http://", f"http://{DOVECOT_CLIENT}:{DOVECOT_SECRET}@"
    )
    server = DovecotServer(
        tmp_path_factory.mktemp("operator-oauth-user"),
        oauth2_introspection_url=f"{introspection}/token/introspection",
        oauth2_username_attribute="email",
    )
    with running_dovecot(server) as started:
        yield started


@pytest.fixture
def app(make_app, oidc_settings, operator):
    return make_app(**oidc_settings(), ESTAFETTE_CA_BUNDLE=str(operator.ca_cert_path))


def _oauth_user_mailbox(services, operator: DovecotServer, owner: str) -> tuple[str, str]:
    address = f"{unique('dr.')}@chu-test.mssante.fr"
    operator.add_user(address, secrets.token_urlsafe(16))  # a password nobody here uses
    with session_scope(services.sessions) as db:
        mailbox = registry.create_mailbox(
            db=db,
            address=address,
            kind="PER",
            imap=registry.ServerSettings(
                operator.host, operator.imaps_port, "tls", "oauth_user", address
            ),
            smtp=registry.ServerSettings(
                operator.host, operator.submission_port, "starttls", "oauth_user", address
            ),
        )
        registry.grant(
            db=db, mailbox=mailbox, user=users.find_user(db=db, username=owner), role="owner"
        )
        public_id = mailbox.public_id
    return address, public_id


def _stored_access_token(services, national_id: str) -> str | None:
    with services.sessions() as db:
        link = db.scalar(select(OidcIdentity).where(OidcIdentity.subject == national_id))
        return link.access_token


def test_an_oauth_user_mailbox_syncs_then_waits_for_a_new_sign_in_and_catches_up(
    services, phone, oidc_provider, operator
):
    username, national_id = professional(services, oidc_provider)
    address, public_id = _oauth_user_mailbox(services, operator, username)
    oidc_provider.add_accounts({national_id: {**psc_claims(national_id), "email": address}})
    phone.sign_in(national_id)
    signed_in_with = _stored_access_token(services, national_id)
    operator.deliver(address, mail("avant"))

    with RunningWorker(services):
        wait_until(lambda: sync_state(services, public_id)[0] == "ok", what="the login")
        wait_until(lambda: subjects(services, public_id) == ["avant"], what="the import")
        refreshed = _stored_access_token(services, national_id)
        assert refreshed and refreshed != signed_in_with  # refreshed before it expired

        oidc_provider.revoke_grants(national_id)  # consent withdrawn at PSC
        operator.doveadm("kick", address)  # the next login needs a new token
        wait_until(
            lambda: sync_state(services, public_id)[0] == "reauth_required",
            timeout=30,
            what="reauth_required",
        )
        wait_until(lambda: outbox_count(services, public_id, "auth.required") == 1)
        operator.deliver(address, mail("pendant"))

        phone.sign_in(national_id)  # the owner signs in again

        wait_until(
            lambda: subjects(services, public_id) == ["avant", "pendant"],
            timeout=30,
            what="the catch-up after the new sign-in",
        )
        wait_until(lambda: sync_state(services, public_id)[0] == "ok", what="ok again")
    assert outbox_count(services, public_id, "auth.required") == 1


def test_the_auth_required_push_carries_no_content():
    from backend.push import payloads

    message = payloads.auth_required("fcm-token")

    assert message.data == {"v": "1", "type": "auth.required"}
    assert message.android.collapse_key == "auth.required"


def test_an_oauth_user_mailbox_sends_with_the_owners_token(
    client, services, phone, oidc_provider, operator
):
    username, national_id = professional(services, oidc_provider)
    address, public_id = _oauth_user_mailbox(services, operator, username)
    oidc_provider.add_accounts({national_id: {**psc_claims(national_id), "email": address}})
    session = phone.sign_in(national_id)

    sent = client.post(
        f"/api/v1/mailboxes/{public_id}/messages",
        headers=bearer(session["access_token"]),
        json={"to": ["confrere@chu-test.mssante.fr"], "subject": "Avis", "text": "Bonjour."},
    )

    assert sent.status_code in (200, 201, 202), body(sent)
    assert any("Avis" in r.data.decode(errors="replace") for r in operator.relayed)
