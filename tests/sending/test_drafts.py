"""Drafts: begun on the phone, kept in the server's Drafts folder, finished anywhere."""

from __future__ import annotations

from tests.sending.support import Doctor
from tests.support import body


def _save(doctor: Doctor, **draft):
    return doctor.http.post(
        f"/api/v1/mailboxes/{doctor.mailbox_id}/drafts", headers=doctor.headers, json=draft
    )


def test_a_draft_saved_from_the_api_opens_in_another_imap_client(alice, bob) -> None:
    saved = _save(
        alice, to=[bob.address], bcc=[alice.address], subject="Avis en cours", text="À compléter"
    )
    assert saved.status_code == 201, body(saved)

    found = alice.find("Drafts", body(saved)["message_id"])
    assert found is not None, "the desktop does not see the draft"
    message, flags = found
    assert b"\\Draft" in flags
    assert message["Subject"] == "Avis en cours"
    assert [a.addr_spec for a in message["To"].addresses] == [bob.address]
    assert [a.addr_spec for a in message["Bcc"].addresses] == [alice.address]
    assert message.get_body(("plain",)).get_content().strip() == "À compléter"
    # And the phone lists it in its Drafts folder, at once.
    assert [m["id"] for m in alice.listing("Drafts")] == [body(saved)["id"]]


def test_saving_again_replaces_the_draft_and_an_empty_draft_is_allowed(alice, bob) -> None:
    first = body(_save(alice))  # nothing typed yet
    again = alice.http.put(
        f"/api/v1/drafts/{first['id']}",
        headers=alice.headers,
        json={"to": [bob.address], "subject": "Version 2"},
    )
    assert again.status_code == 200, body(again)

    drafts = alice.folder_messages("Drafts")
    assert [m["Subject"] for m, _flags in drafts] == ["Version 2"]
    assert [m["id"] for m in alice.listing("Drafts")] == [body(again)["id"]]
    assert (
        alice.http.get(f"/api/v1/messages/{first['id']}", headers=alice.headers).status_code == 404
    )


def test_a_discarded_draft_is_gone_from_the_server(alice) -> None:
    saved = body(_save(alice, subject="Brouillon"))
    response = alice.http.delete(f"/api/v1/drafts/{saved['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert alice.folder_messages("Drafts") == []
    assert alice.listing("Drafts") == []


def test_only_a_draft_is_replaced_as_one(alice, bob) -> None:
    sent = alice.sent(to=[bob.address], subject="Envoyé")
    response = alice.http.put(
        f"/api/v1/drafts/{sent['id']}", headers=alice.headers, json={"subject": "x"}
    )
    assert response.status_code == 404
    assert alice.find("Sent", sent["message_id"]) is not None
