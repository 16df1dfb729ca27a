"""The operator command line: secrets from stdin only, and no work on a stale schema."""

from __future__ import annotations

from sqlalchemy import text

from backend.accounts import users
from backend.mailboxes import registry
from backend.storage.database import session_scope
from tests.support import cli_create_org_mailbox


def test_users_create_reads_the_password_from_stdin(app, services) -> None:
    result = app.test_cli_runner().invoke(
        args=["users", "create", "Eve", "--admin", "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    with session_scope(services.sessions) as db:
        user = users.authenticate_password(db=db, username="eve", password="a long enough password")
        assert user.is_admin


def test_there_is_no_way_to_pass_a_secret_as_an_argument(app) -> None:
    result = app.test_cli_runner().invoke(args=["users", "create", "x", "--password", "p"])
    assert result.exit_code != 0
    assert "No such option" in result.output


def test_mailboxes_create_and_grant(app, services) -> None:
    runner = app.test_cli_runner()
    runner.invoke(
        args=["users", "create", "fred", "--password-stdin"], input="a long enough password\n"
    )
    created = cli_create_org_mailbox(runner, "secretariat@ch-test.mssante.fr", "imap.example")
    assert created.exit_code == 0, created.output
    granted = runner.invoke(
        args=["mailboxes", "grant", "secretariat@ch-test.mssante.fr", "fred", "--role", "delegate"]
    )
    assert granted.exit_code == 0, granted.output
    with session_scope(services.sessions) as db:
        fred = users.find_user(db=db, username="fred")
        [(mailbox, role)] = registry.visible_mailboxes(db=db, user=fred)
        assert (mailbox.kind, role, mailbox.imap_secret) == ("ORG", "delegate", "imap-secret")


def test_commands_refuse_an_out_of_date_schema(app, services) -> None:
    with services.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    result = app.test_cli_runner().invoke(
        args=["users", "create", "gil", "--password-stdin"], input="a long enough password\n"
    )
    assert result.exit_code != 0
    assert "db upgrade" in result.output


def test_audit_verify_reports_an_intact_trail(app, services) -> None:
    services.audit.record("test.event")
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "intact: 1 records" in result.output
