"""An admin change and its audit record commit together, and the CLI and the API record the
same change the same way (issue 14.3)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from backend.storage.models import AuditRecord, Membership, User
from tests.admin.conftest import SignedIn, sign_in
from tests.support import DEFAULT_PASSWORD, body


def _records(services, action: str) -> list[AuditRecord]:
    with services.sessions() as db:
        return list(db.scalars(select(AuditRecord).where(AuditRecord.action == action)))


def _details(record: AuditRecord) -> dict:
    return json.loads(record.details) if record.details else {}


@pytest.fixture
def audit_write_fails(services, monkeypatch):
    """The audit write inside a change's transaction raises, as a full disk or a crash
    between the two statements would; records written on their own still go."""
    real = services.audit.record

    def record(*args, **kwargs):
        if kwargs.get("within") is not None:
            raise RuntimeError("the audit write failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(services.audit, "record", record)


def test_when_the_audit_write_fails_the_change_is_not_kept(
    client, services, admin: SignedIn, audit_write_fails
) -> None:
    response = client.post(
        "/api/v1/admin/users",
        json={"username": "sans.trace", "password": DEFAULT_PASSWORD},
        headers=admin.headers,
    )

    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    with services.sessions() as db:
        assert db.scalar(select(User).where(User.username == "sans.trace")) is None
    [attempt] = _records(services, "admin.user_create")
    assert attempt.outcome == "failed"  # the attempt is traced; no change is


def test_when_the_audit_write_fails_a_cli_change_is_not_kept(
    app, services, audit_write_fails
) -> None:
    result = app.test_cli_runner().invoke(
        args=["users", "create", "sans.trace", "--password-stdin"], input=f"{DEFAULT_PASSWORD}\n"
    )

    assert result.exit_code != 0
    with services.sessions() as db:
        assert db.scalar(select(User).where(User.username == "sans.trace")) is None
    assert _records(services, "admin.user_create") == []


def test_the_cli_and_the_api_record_the_same_change_the_same_way(
    app, client, services, admin: SignedIn
) -> None:
    runner = app.test_cli_runner()
    runner.invoke(
        args=["users", "create", "par.la.console", "--password-stdin"],
        input=f"{DEFAULT_PASSWORD}\n",
    )
    made = client.post(
        "/api/v1/admin/users",
        json={"username": "par.l.api", "password": DEFAULT_PASSWORD},
        headers=admin.headers,
    )
    assert made.status_code == 201, body(made)
    mailbox = {
        "address": "secretariat@chu-test.mssante.fr",
        "kind": "ORG",
        "imap": {"host": "imap.x", "port": 993, "security": "tls", "auth": "password",
                 "secret": "imap-secret"},
    }  # fmt: skip
    created = client.post("/api/v1/admin/mailboxes", json=mailbox, headers=admin.headers)
    assert created.status_code == 201, body(created)
    member = sign_in(client, services)
    runner.invoke(
        args=["mailboxes", "grant", mailbox["address"], member.username, "--role", "delegate"]
    )
    other = sign_in(client, services)
    granted = client.put(
        f"/api/v1/admin/mailboxes/{body(created)['id']}/members/{other.user_id}",
        json={"role": "delegate"},
        headers=admin.headers,
    )
    assert granted.status_code == 200, body(granted)

    by_cli, by_api = _records(services, "admin.user_create")
    assert (by_cli.actor, by_api.actor) == ("cli", admin.user_id)
    assert _details(by_cli) == _details(by_api)
    grants = _records(services, "admin.member_grant")
    assert [_details(r) for r in grants] == [{"before.role": None, "after.role": "delegate"}] * 2
    with services.sessions() as db:
        assert db.scalar(select(Membership.role).where(Membership.role == "delegate"))
