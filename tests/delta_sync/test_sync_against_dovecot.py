"""GET /sync end to end: what the desktop client does on the IMAP server reaches the phone."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tests.messages.support import Inbox
from tests.support import body


def _mail(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Dr Test <test@ch-exemple.mssante.fr>"
    message["To"] = "x@chu-test.mssante.fr"
    message["Subject"] = subject
    message.set_content("Corps du message.")
    return bytes(message)


@pytest.fixture
def inbox(make_app, dovecot) -> Iterator[Inbox]:
    app = make_app(ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path))
    yield Inbox.create(app.test_client(), app.extensions["estafette"], dovecot)


def _sync(inbox: Inbox, since: str | None = None) -> dict:
    response = inbox.http.get(
        "/api/v1/sync", headers=inbox.headers, query_string={"since": since} if since else {}
    )
    assert response.status_code == 200, body(response)
    return body(response)


def test_new_mail_a_flag_set_on_the_desktop_and_an_expunge_come_through_sync(
    inbox: Inbox,
) -> None:
    first = inbox.deliver(_mail("Résultats de biologie"))
    snapshot = _sync(inbox)
    assert [(c["op"], c["message"]["id"]) for c in snapshot["changes"]] == [("upsert", first)]

    with inbox.desktop() as desktop:
        desktop.select_folder("INBOX")
        desktop.add_flags(desktop.search(["SUBJECT", "biologie"]), [b"\\Seen"])
    second = inbox.deliver(_mail("Compte rendu opératoire"))  # the sync also sees the flag
    delta = _sync(inbox, snapshot["state"])

    upserts = {c["message"]["id"]: c["message"] for c in delta["changes"] if c["op"] == "upsert"}
    assert set(upserts) == {first, second}
    assert upserts[first]["seen"] is True and upserts[second]["seen"] is False
    assert upserts[second]["subject"] == "Compte rendu opératoire"

    with inbox.desktop() as desktop:
        desktop.select_folder("INBOX")
        desktop.delete_messages(desktop.search(["SUBJECT", "biologie"]))
        desktop.expunge()
    inbox.sync()
    gone = _sync(inbox, delta["state"])

    assert gone["changes"] == [
        {"op": "delete", "message": {"id": first, "mailbox_id": inbox.mailbox_id}}
    ]
