"""No header a user or a received mail can shape may forge another header line.

Python's `email` decodes RFC 2047 encoded words while folding, so `=0D=0A` inside one is
as dangerous as a literal CR LF: every value is judged after decoding, and refused with
422 before anything is sent.
"""

from __future__ import annotations

import io
import os

import pytest
from marshmallow import ValidationError
from sqlalchemy import update

from backend.errors import UnsafeHeader
from backend.outgoing.compose import Draft, ReplyTo, compose
from backend.outgoing.headers import is_safe_header_value
from backend.storage.models import Mailbox
from mobile_api.admin.schemas import MailboxCreateSchema, MailboxPatchSchema
from tests.sending.support import relayed_with
from tests.support import body

INJECTED = "X-Injected-Header"

HOSTILE_SUBJECTS = [
    "=?utf-8?q?Bonjour=0D=0AX-Injected-Header:_1=0D=0AReply-To:_spy@gmail.com?=",
    "=?utf-8?b?Qm9uam91cg0KWC1JbmplY3RlZC1IZWFkZXI6IDE=?=",  # the same, base64
    "=?iso-8859-1?q?a=0AX-Injected-Header:_1?=",
    "=?utf-8?q?a=00b?=",
    "=?utf-8?q?a=0Bb?=",
    "=?utf-8?q?a=0Cb?=",
    "=?utf-8?q?a=C2=85X-Injected-Header:_1?=",  # NEL
    "=?utf-8?q?a=E2=80=A8X-Injected-Header:_1?=",  # LINE SEPARATOR
    "Objet=?utf-8?q?=0D=0AX-Injected-Header:_1?=",  # glued to a word
    "a\u2028X-Injected-Header: 1",
    "a\u2029b",
    "a\x85b",
    "a\x0bb",
]


def _nothing_injected_anywhere(alice, bob) -> None:
    for doctor, folder in ((bob, "INBOX"), (alice, "Sent")):
        for message, _flags in doctor.folder_messages(folder):
            assert INJECTED not in message, f"{folder} holds an injected header"
            assert len(message.get_all("From", [])) <= 1


@pytest.mark.parametrize("value", HOSTILE_SUBJECTS)
def test_every_kind_of_line_break_and_nul_is_unsafe_once_decoded(value: str) -> None:
    assert not is_safe_header_value(value)


@pytest.mark.parametrize("subject", [HOSTILE_SUBJECTS[0], HOSTILE_SUBJECTS[1], "a\u2028b"])
def test_a_subject_that_decodes_to_a_line_break_is_refused(alice, bob, dovecot, subject) -> None:
    before = len(dovecot.relayed)

    response = alice.send(to=[bob.address], subject=subject)

    assert response.status_code == 422, body(response)
    assert body(response)["errors"] == {"subject": ["A single line of text."]}
    assert len(dovecot.relayed) == before
    _nothing_injected_anywhere(alice, bob)


def test_an_attachment_name_that_decodes_to_a_line_break_is_refused(alice, bob, dovecot) -> None:
    before = len(dovecot.relayed)

    response = alice.http.post(
        f"/api/v1/mailboxes/{alice.mailbox_id}/messages",
        data={
            "to": [bob.address],
            "subject": "Imagerie",
            "attachments": [
                (
                    io.BytesIO(b"%PDF-1.7\n"),
                    "=?utf-8?q?cr.pdf=0D=0AX-Injected-Header:_1?=",
                    "application/pdf",
                )
            ],
        },
        headers=alice.headers,
        content_type="multipart/form-data",
    )

    assert response.status_code == 422, body(response)
    assert body(response)["code"] == "unsafe_header"
    assert body(response)["errors"] == {"attachments": ["A single line of text."]}
    assert len(dovecot.relayed) == before
    _nothing_injected_anywhere(alice, bob)


def test_an_attachment_name_keeps_no_hidden_or_line_breaking_characters(alice, bob) -> None:
    response = alice.http.post(
        f"/api/v1/mailboxes/{alice.mailbox_id}/messages",
        data={
            "to": [bob.address],
            "subject": "Imagerie",
            "attachments": [(io.BytesIO(b"x"), "r\u202egnp\u2028.exe", "image/png")],
        },
        headers=alice.headers,
        content_type="multipart/form-data",
    )

    assert response.status_code == 202, body(response)
    message, _flags = bob.find("INBOX", body(response)["message_id"])
    assert [p.get_filename() for p in message.iter_attachments()] == ["rgnp.exe"]


def test_a_display_name_that_decodes_to_a_line_break_is_refused(
    alice, bob, dovecot, dovecot_services
) -> None:
    with dovecot_services.sessions.begin() as db:
        db.execute(
            update(Mailbox)
            .where(Mailbox.public_id == alice.mailbox_id)
            .values(display_name="=?utf-8?q?Dr=0D=0AFrom:_boss@chu-test.mssante.fr?=")
        )
    before = len(dovecot.relayed)

    response = alice.send(to=[bob.address], subject="Bonjour")

    assert response.status_code == 422, body(response)
    assert body(response)["code"] == "unsafe_header"
    assert len(dovecot.relayed) == before
    _nothing_injected_anywhere(alice, bob)


def test_a_received_original_recipient_never_reaches_the_read_receipt(alice, bob, dovecot) -> None:
    message_id = f"<{os.urandom(6).hex()}@chu-test.mssante.fr>"
    dovecot.deliver(
        bob.address,
        (
            f"From: <{alice.address}>\r\n"
            f"To: <{bob.address}>\r\n"
            "Subject: Avis\r\n"
            f"Message-ID: {message_id}\r\n"
            f"Disposition-Notification-To: <{alice.address}>\r\n"
            "Original-Recipient: =?utf-8?q?rfc822;x@chu-test.mssante.fr=0D=0A"
            "X-Injected-Header:_1?=\r\n"
            "\r\n"
            "Bonjour.\r\n"
        ).encode(),
    )
    received = bob.inbox_id(message_id)
    before = len(dovecot.relayed)

    response = bob.read_receipt(received)

    assert response.status_code == 422, body(response)
    assert body(response)["code"] == "unsafe_header"
    assert body(response)["errors"] == {"original_recipient": ["A single line of text."]}
    assert len(dovecot.relayed) == before
    assert not [m for m, _f in alice.folder_messages("INBOX") if INJECTED in m]


def test_a_harmless_encoded_word_is_sent_and_decoded_as_typed(alice, bob) -> None:
    sent = alice.sent(to=[bob.address], subject="=?utf-8?q?R=C3=A9sultats?= du jour")

    message, _flags = bob.find("INBOX", sent["message_id"])
    assert message["Subject"] == "Résultats du jour"
    assert relayed_with(alice.dovecot, sent["message_id"])


def test_a_threading_header_from_the_original_is_checked_before_the_reply_is_built() -> None:
    draft = Draft(
        sender="dr.a@chu-test.mssante.fr",
        sender_name=None,
        to=("dr.b@chu-test.mssante.fr",),
        subject="Re: avis",
        text="Oui.",
        reply_to=ReplyTo("<a@b>", ("=?utf-8?q?<c@d>=0D=0AX-Injected-Header:_1?=",)),
    )

    with pytest.raises(UnsafeHeader):
        compose(draft)


@pytest.mark.parametrize("value", ["Résultats", "=?utf-8?q?R=C3=A9sultats?=", "a=?x", "=?bad?"])
def test_ordinary_values_are_single_lines(value: str) -> None:
    assert is_safe_header_value(value)


@pytest.mark.parametrize("schema", [MailboxCreateSchema, MailboxPatchSchema])
def test_an_admin_cannot_give_a_mailbox_a_display_name_that_breaks_from(schema) -> None:
    with pytest.raises(ValidationError) as refused:
        schema(partial=True).load({"display_name": HOSTILE_SUBJECTS[0]})

    assert refused.value.messages == {"display_name": ["A single line of text."]}
