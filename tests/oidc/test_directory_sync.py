"""The establishment IdP's directory (SCIM 2.0) drives the accounts: `users sync-idp`
imports its users and group-based mailbox grants; a leaver removed there loses access at
the next run, every session included."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from backend.mailboxes import registry
from backend.storage.database import session_scope
from backend.storage.models import Mailbox, Membership, User
from devtools.scim_directory import ScimDirectory
from tests.admin.conftest import sign_in
from tests.factories import unique
from tests.support import bearer, body

URGENCES = "urgences@chu-test.mssante.fr"


@pytest.fixture
def directory() -> Iterator[ScimDirectory]:
    served = ScimDirectory(secrets.token_urlsafe(24))
    yield served
    served.close()


@pytest.fixture
def app(make_app, oidc_settings, directory: ScimDirectory, tmp_path):
    token_file = tmp_path / "scim-token"
    token_file.write_text(directory.token)
    return make_app(
        **oidc_settings(
            idp={
                "scim_url": directory.url,
                "scim_token_file": str(token_file),
                "mailbox_groups": {"urgences": {"mailbox": URGENCES, "role": "delegate"}},
            }
        )
    )


def _sync(app) -> str:
    result = app.test_cli_runner().invoke(args=["users", "sync-idp"])
    assert result.exit_code == 0, result.output
    return result.output


def _user(services, username: str) -> User | None:
    with services.sessions() as db:
        return db.scalar(select(User).where(User.username == username))


def test_a_leaver_removed_in_the_idp_loses_access_at_the_next_sync(
    app, client, services, phone, oidc_provider, directory
):
    nurse = unique("ide.")
    directory.add_user(nurse, given="Inès", family="DURAND")
    assert "idp: 1 created" in _sync(app)
    oidc_provider.add_accounts({f"kc-{nurse}": {"preferred_username": nurse}})
    session = phone.sign_in(f"kc-{nurse}", provider="idp")
    assert client.get("/api/v1/devices", headers=bearer(session["access_token"])).status_code == 200

    directory.remove_user(nurse)
    assert "1 disabled" in _sync(app)

    refused = client.get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert refused.status_code == 401, body(refused)
    assert _user(services, nurse).disabled
    attempt = phone.through_provider(f"kc-{nurse}", provider="idp")
    again = phone.exchange(attempt.returned()["code"], attempt.verifier)
    assert body(again)["code"] == "account_not_provisioned"


def test_an_inactive_user_is_disabled_and_comes_back_when_reactivated(app, services, directory):
    nurse = unique("ide.")
    directory.add_user(nurse)
    _sync(app)

    directory.set_active(nurse, False)
    _sync(app)
    assert _user(services, nurse).disabled

    directory.set_active(nurse, True)
    assert "1 enabled" in _sync(app)
    assert not _user(services, nurse).disabled


def test_group_members_get_the_mailbox_and_leaving_the_group_takes_it_away(
    app, services, directory
):
    with session_scope(services.sessions) as db:
        registry.create_mailbox(
            db=db,
            address=URGENCES,
            kind="ORG",
            imap=registry.ServerSettings("imap.example", 993, "tls", "password", None, "x"),
        )
    alice, bob = unique("ide."), unique("ide.")
    directory.add_user(alice)
    directory.add_user(bob)
    directory.set_group("urgences", [alice, bob])
    assert "2 granted" in _sync(app)

    directory.set_group("urgences", [alice])
    assert "1 revoked" in _sync(app)

    with services.sessions() as db:
        members = set(
            db.scalars(
                select(User.username)
                .join(Membership, Membership.user_id == User.id)
                .join(Mailbox, Mailbox.id == Membership.mailbox_id)
                .where(Mailbox.address == URGENCES)
            )
        )
    assert members == {alice}


def test_a_directory_that_cannot_be_read_changes_nothing(app, services, directory):
    nurse = unique("ide.")
    directory.add_user(nurse)
    _sync(app)
    directory.fail_next(503)

    result = app.test_cli_runner().invoke(args=["users", "sync-idp"])

    assert result.exit_code == 1
    assert "could not be read" in result.output
    assert not _user(services, nurse).disabled


def test_local_accounts_are_left_alone(app, client, services, directory):
    admin = sign_in(client, services, admin=True)  # the break-glass account, not in the IdP
    _sync(app)

    assert not _user(services, admin.username).disabled


def test_an_administrator_runs_the_sync_from_the_api(app, client, services, directory):
    admin = sign_in(client, services, admin=True)
    directory.add_user(unique("ide."))

    response = client.post("/api/v1/admin/directory-sync", headers=admin.headers)

    assert response.status_code == 200, body(response)
    assert body(response)["providers"] == [
        {"provider": "idp", "created": 1, "enabled": 0, "disabled": 0, "granted": 0, "revoked": 0}
    ]
