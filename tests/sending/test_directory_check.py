"""Sending checks each recipient against the national directory: a warning, or a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.directory.support import extraction, import_file
from tests.messages.support import audit_rows
from tests.sending.support import Doctor
from tests.support import body


@pytest.fixture
def directory(dovecot_app, tmp_path: Path) -> None:
    """A directory that knows Hélène Lefèvre, but neither alice nor bob."""
    result = import_file(dovecot_app, extraction(tmp_path, 20))
    assert result.exit_code == 0, result.output


def test_an_address_unknown_to_the_directory_is_sent_with_a_warning(
    alice, bob, directory, dovecot_services
) -> None:
    outsider = "nobody.known@chu-test.mssante.fr"

    sent = alice.sent(to=[bob.address], cc=[outsider, "helene.lefevre@chu-test.mssante.fr"])

    # bob has a mailbox in Estafette: the establishment's own addresses are known.
    assert sent["warnings"] == [
        {"code": "recipient_not_in_directory", "field": "cc", "address": outsider}
    ]
    assert sent["id"] is not None
    [record] = audit_rows(dovecot_services, "message.send")
    assert '"unknown_recipients":1' in record.details
    assert outsider not in record.details


def test_known_recipients_give_no_warning(alice, bob, directory) -> None:
    sent = alice.sent(to=["helene.lefevre@chu-test.mssante.fr", bob.address])

    assert sent["warnings"] == []


def test_an_empty_directory_warns_about_nobody(alice, bob) -> None:
    assert alice.sent(to=["nobody.known@chu-test.mssante.fr"])["warnings"] == []


def test_the_admin_may_refuse_unknown_recipients_and_nothing_is_sent(
    make_app, dovecot, tmp_path: Path
) -> None:
    app = make_app(
        ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path),
        ESTAFETTE_DIRECTORY_UNKNOWN_RECIPIENTS="refuse",
    )
    assert import_file(app, extraction(tmp_path, 5)).exit_code == 0
    services = app.extensions["estafette"]
    alice = Doctor.create(app.test_client(), services, dovecot)
    before = len(dovecot.relayed)

    response = alice.send(to=["nobody.known@chu-test.mssante.fr"])

    assert response.status_code == 422
    problem = body(response)
    assert problem["code"] == "recipient_not_in_directory"
    assert problem["errors"] == {
        "to": ["nobody.known@chu-test.mssante.fr is not in the MSSanté directory"]
    }
    assert len(dovecot.relayed) == before
