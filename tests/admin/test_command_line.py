"""The operator's admin commands: disable, reset a TOTP or a password — sessions end at once."""

from __future__ import annotations

from sqlalchemy import select

from backend.storage.models import AuditRecord, User
from tests.admin.conftest import sign_in
from tests.support import body, cli_create_org_mailbox


def test_users_disable_ends_the_sessions_and_is_audited(app, client, services) -> None:
    user = sign_in(client, services)
    result = app.test_cli_runner().invoke(args=["users", "disable", user.username])
    assert result.exit_code == 0, result.output
    assert "1 sessions ended" in result.output
    assert client.get("/api/v1/mailboxes", headers=user.headers).status_code == 401
    with services.sessions() as db:
        record = db.scalar(select(AuditRecord).where(AuditRecord.action == "admin.user_update"))
    assert (record.actor, record.target) == ("cli", user.user_id)


def test_users_reset_otp_asks_for_enrolment_again(app, client, services) -> None:
    user = sign_in(client, services)
    result = app.test_cli_runner().invoke(args=["users", "reset-otp", user.username])
    assert result.exit_code == 0, result.output
    with services.sessions() as db:
        assert db.scalar(select(User.totp_active).where(User.public_id == user.user_id)) is False
    login = client.post(
        "/api/v1/auth/login",
        json={"username": user.username, "password": "correct horse battery staple"},
    )
    assert body(login)["enrollment_required"] is True


def test_users_reset_password_reads_stdin_only(app, client, services) -> None:
    user = sign_in(client, services)
    result = app.test_cli_runner().invoke(
        args=["users", "reset-password", user.username, "--password-stdin"],
        input="a brand new long password\n",
    )
    assert result.exit_code == 0, result.output
    login = client.post(
        "/api/v1/auth/login",
        json={"username": user.username, "password": "a brand new long password"},
    )
    assert login.status_code == 200
    unknown = app.test_cli_runner().invoke(args=["users", "disable", "nobody"])
    assert unknown.exit_code != 0 and "no such user" in unknown.output


def test_mailboxes_revoke_cuts_a_delegate_off(app, client, services) -> None:
    user = sign_in(client, services)
    runner = app.test_cli_runner()
    cli_create_org_mailbox(runner, "secretariat@chu-test.mssante.fr", "imap.x")
    runner.invoke(
        args=[
            "mailboxes",
            "grant",
            "secretariat@chu-test.mssante.fr",
            user.username,
            "--role",
            "delegate",
        ]
    )
    assert len(body(client.get("/api/v1/mailboxes", headers=user.headers))) == 1
    revoked = runner.invoke(
        args=["mailboxes", "revoke", "secretariat@chu-test.mssante.fr", user.username]
    )
    assert revoked.exit_code == 0, revoked.output
    assert body(client.get("/api/v1/mailboxes", headers=user.headers)) == []


def test_certificates_check_fails_on_an_expired_certificate(app, services, tmp_path) -> None:
    import datetime as dt

    from backend.mailboxes import registry
    from backend.storage.database import session_scope
    from devtools.pki import make_ca

    healthy = app.test_cli_runner().invoke(args=["certificates", "check"])
    assert healthy.exit_code == 0, healthy.output
    expired = make_ca("Fake IGC Santé").issue_client_cert(
        "CN=Vieux DPI", not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    )
    with session_scope(services.sessions) as db:
        registry.create_mailbox(
            db=db,
            address="dpi@chu-test.mssante.fr",
            kind="APP",
            imap=registry.ServerSettings("imap.x", 993, "tls", "certificate", None, "pass"),
            certificate=expired.to_pkcs12(b"pass"),
        )
    result = app.test_cli_runner().invoke(args=["certificates", "check"])
    assert result.exit_code == 1
    assert "error" in result.output and "CN=Vieux DPI" in result.output
