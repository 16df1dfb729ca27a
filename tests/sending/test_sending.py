"""Sending from the phone: inside the trust space only, threaded, with MSSanté headers."""

from __future__ import annotations

import io
import logging

from sqlalchemy import update

from backend.accounts import users
from backend.mailboxes import registry
from backend.storage.database import session_scope
from backend.storage.models import Mailbox
from tests.messages.support import audit_rows, audit_text
from tests.sending.support import Doctor, relayed_with
from tests.support import body


def _text(message) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def test_message_inside_the_trust_space_is_delivered_and_kept_in_sent(alice, bob) -> None:
    sent = alice.sent(to=[bob.address], subject="Résultats de biologie", text="Normal.\n")

    received = bob.find("INBOX", sent["message_id"])
    assert received is not None, "the message never reached bob's INBOX"
    message, _flags = received
    assert message["Subject"] == "Résultats de biologie"
    assert message["From"].addresses[0].addr_spec == alice.address
    assert _text(message) == "Normal.\n"

    copy = alice.find("Sent", sent["message_id"])
    assert copy is not None, "no copy in alice's Sent folder"
    assert b"\\Seen" in copy[1]
    sent_folder = alice.listing("Sent")
    assert [m["id"] for m in sent_folder] == [sent["id"]]
    assert sent_folder[0]["subject"] == "Résultats de biologie"
    assert sent["sent_copy"] is True
    # The relay behind Dovecot offers no DSN by default (RFC 3461): none may be asked for.
    assert sent["dsn_requested"] is False


def test_every_mail_carries_x_mss_nil_and_a_message_id_on_the_senders_domain(alice, bob) -> None:
    sent = alice.sent(to=[bob.address])

    message, _flags = bob.find("INBOX", sent["message_id"])
    assert message["X-MSS-NIL"] == "test-nil"
    assert message["Message-ID"].endswith("@chu-test.mssante.fr>")
    assert "X-MSS-MES" not in message, "FIN is for mail to patients only"


def test_mail_to_a_patient_carries_x_mss_mes_fin(alice, dovecot) -> None:
    patient = "jean.dupont.test@patient.mssante.fr"
    sent = alice.sent(to=[patient], subject="Votre compte rendu")

    [relayed] = relayed_with(dovecot, sent["message_id"])
    assert relayed.recipients == (patient,)
    assert b"\r\nX-MSS-MES: FIN\r\n" in relayed.data
    assert b"\r\nX-MSS-NIL: test-nil\r\n" in relayed.data


def test_recipient_outside_the_trust_space_is_refused_and_nothing_is_sent(
    alice, bob, dovecot
) -> None:
    before = len(dovecot.relayed)

    response = alice.send(to=[bob.address], cc=["someone@gmail.com"], subject="Fuite")

    assert response.status_code == 422
    problem = body(response)
    assert problem["code"] == "recipient_outside_trust_space"
    assert problem["recipients"] == ["someone@gmail.com"]
    assert problem["errors"] == {"cc": ["someone@gmail.com is outside the MSSanté trust space"]}
    assert len(dovecot.relayed) == before
    assert bob.folder_messages("INBOX") == []
    assert alice.folder_messages("Sent") == []
    [record] = audit_rows(alice.services, "message.send")
    assert record.outcome == "failed"
    assert '"code":"recipient_outside_trust_space"' in record.details


def test_a_look_alike_domain_is_outside_the_trust_space(alice, dovecot) -> None:
    before = len(dovecot.relayed)

    for address in ("dr@mssante.fr.evil.com", "dr@evilmssante.fr", "dr@mssante.fr"):
        response = alice.send(to=[address])
        assert response.status_code == 422, address
        assert body(response)["code"] == "recipient_outside_trust_space"
    assert len(dovecot.relayed) == before


def test_a_reply_threads_in_the_desktop_client(alice, bob) -> None:
    bob.dovecot.deliver(
        alice.address,
        (
            f"From: <{bob.address}>\r\nTo: <{alice.address}>\r\nSubject: Patient du lit 12\r\n"
            "Message-ID: <second@chu-test.mssante.fr>\r\n"
            "References: <root@chu-test.mssante.fr>\r\n"
            "In-Reply-To: <root@chu-test.mssante.fr>\r\n\r\nAvis ?\r\n"
        ).encode(),
    )
    original = alice.inbox_id("<second@chu-test.mssante.fr>")

    sent = alice.sent(to=[bob.address], subject="Re: Patient du lit 12", in_reply_to=original)

    reply, _flags = bob.find("INBOX", sent["message_id"])
    assert reply["In-Reply-To"] == "<second@chu-test.mssante.fr>"
    assert reply["References"].split() == [
        "<root@chu-test.mssante.fr>",
        "<second@chu-test.mssante.fr>",
    ]
    answered = alice.find("INBOX", "<second@chu-test.mssante.fr>")
    assert b"\\Answered" in answered[1]
    assert [m["answered"] for m in alice.listing() if m["id"] == original] == [True]
    [record] = audit_rows(alice.services, "message.send")
    assert f'"in_reply_to":"{original}"' in record.details


def test_a_reply_to_a_message_of_another_mailbox_is_refused(alice, bob) -> None:
    bob.dovecot.deliver(bob.address, b"Subject: x\r\nMessage-ID: <b1@x.mssante.fr>\r\n\r\nx\r\n")
    bobs = bob.inbox_id("<b1@x.mssante.fr>")

    response = alice.send(to=[bob.address], in_reply_to=bobs)

    assert response.status_code == 404
    assert body(response)["code"] == "not_found"


def test_another_users_mailbox_is_not_found(alice, bob, dovecot) -> None:
    before = len(dovecot.relayed)

    response = alice.http.post(
        f"/api/v1/mailboxes/{bob.mailbox_id}/messages",
        json={"to": [bob.address], "subject": "x", "text": "x"},
        headers=alice.headers,
    )

    assert response.status_code == 404
    assert len(dovecot.relayed) == before


def test_attachments_sent_as_multipart_arrive_intact(alice, bob) -> None:
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 40
    response = alice.http.post(
        f"/api/v1/mailboxes/{alice.mailbox_id}/messages",
        data={
            "to": [bob.address],
            "subject": "Imagerie",
            "text": "Ci-joint.",
            "request_read_receipt": "false",
            "attachments": [
                (io.BytesIO(pdf), "compte-rendu.pdf", "application/pdf"),
                (io.BytesIO(b"a;b\n1;2\n"), "../../résultats.csv", "text/csv"),
            ],
        },
        headers=alice.headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, body(response)

    message, _flags = bob.find("INBOX", body(response)["message_id"])
    parts = {p.get_filename(): p for p in message.iter_attachments()}
    assert set(parts) == {"compte-rendu.pdf", "résultats.csv"}
    assert parts["compte-rendu.pdf"].get_content() == pdf
    assert parts["compte-rendu.pdf"].get_content_type() == "application/pdf"
    assert parts["résultats.csv"].get_content_type() == "text/csv"
    assert alice.listing("Sent")[0]["has_attachments"] is True


def test_a_message_over_the_mailbox_limit_is_refused_with_413(alice, bob, dovecot) -> None:
    with alice.services.sessions() as db:
        db.execute(
            update(Mailbox)
            .where(Mailbox.public_id == alice.mailbox_id)
            .values(max_message_bytes=4096)
        )
        db.commit()
    before = len(dovecot.relayed)

    response = alice.send(to=[bob.address], text="x" * 5000)

    assert response.status_code == 413
    assert body(response)["code"] == "payload_too_large"
    assert body(response)["limit"] == 4096
    assert len(dovecot.relayed) == before
    assert alice.send(to=[bob.address], text="court").status_code == 202


def test_an_invalid_address_is_a_validation_error(alice) -> None:
    response = alice.send(to=["not an address"])

    assert response.status_code == 422
    assert body(response)["code"] == "validation_error"
    assert "to" in body(response)["errors"]


def test_a_header_injection_in_the_subject_is_refused(alice, dovecot) -> None:
    before = len(dovecot.relayed)

    response = alice.send(to=[alice.address], subject="Bonjour\r\nBcc: spy@gmail.com")

    assert response.status_code == 422
    assert body(response)["errors"] == {"subject": ["A single line of text."]}
    assert len(dovecot.relayed) == before


def test_text_that_no_mail_can_carry_is_a_validation_error_not_a_500(alice) -> None:
    response = alice.http.post(
        f"/api/v1/mailboxes/{alice.mailbox_id}/messages",
        data=b'{"to": ["dr@chu-test.mssante.fr"], "subject": "x", "text": "\\ud800"}',
        headers={**alice.headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert "text" in body(response)["errors"]


def test_nothing_of_the_content_reaches_the_audit_trail_or_the_logs(alice, bob, caplog) -> None:
    canary = "CANARY-Mme-Dupont-Cancer"
    caplog.set_level(logging.DEBUG)

    alice.sent(to=[bob.address], subject=canary, text=canary, request_read_receipt=True)
    alice.send(to=["x@gmail.com"], subject=canary, text=canary)

    assert canary not in audit_text(alice.services)
    assert bob.address not in audit_text(alice.services)
    assert canary not in caplog.text


def test_a_delegate_sends_from_the_organisational_mailbox(
    http, dovecot_services, dovecot, alice, bob
) -> None:
    secretariat = Doctor.create(http, dovecot_services, dovecot, kind="ORG")
    with session_scope(dovecot_services.sessions) as db:
        mailbox = registry.find_mailbox(db=db, address=secretariat.address)
        user = users.find_user(db=db, username=bob.username)
        registry.grant(db=db, mailbox=mailbox, user=user, role="delegate")

    response = bob.http.post(
        f"/api/v1/mailboxes/{secretariat.mailbox_id}/messages",
        json={"to": [alice.address], "subject": "Rendez-vous", "text": "Mardi 10h."},
        headers=bob.headers,
    )

    assert response.status_code == 202, body(response)
    message, _flags = alice.find("INBOX", body(response)["message_id"])
    assert message["From"].addresses[0].addr_spec == secretariat.address
    [record] = audit_rows(dovecot_services, "message.send")
    assert record.mailbox == secretariat.mailbox_id


def test_bcc_goes_in_the_envelope_and_only_in_the_senders_copy(
    alice, bob, http, dovecot_services, dovecot
) -> None:
    carol = Doctor.create(http, dovecot_services, dovecot)
    sent = alice.sent(to=[bob.address], bcc=[carol.address], subject="Avis confidentiel")

    [relayed] = relayed_with(dovecot, sent["message_id"])
    assert set(relayed.recipients) == {bob.address, carol.address}
    assert b"\r\nBcc:" not in relayed.data and carol.address.encode() not in relayed.data
    for recipient in (bob, carol):  # both received it; neither copy names carol
        received = recipient.find("INBOX", sent["message_id"])
        assert received is not None
        assert received[0]["Bcc"] is None
    own, _flags = alice.find("Sent", sent["message_id"])
    assert own["Bcc"].addresses[0].addr_spec == carol.address


def test_bcc_outside_the_trust_space_is_refused_and_nothing_is_sent(alice, bob, dovecot) -> None:
    before = len(dovecot.relayed)
    response = alice.send(to=[bob.address], bcc=["someone@gmail.com"])
    assert response.status_code == 422, body(response)
    assert body(response)["code"] == "recipient_outside_trust_space"
    assert len(dovecot.relayed) == before


def test_mail_sent_as_urgent_rings_as_urgent_at_the_recipients(alice, bob) -> None:
    sent = alice.sent(to=[bob.address], subject="Kaliémie à 6,8", urgent=True)

    message, _flags = bob.find("INBOX", sent["message_id"])
    assert message["Importance"] == "high" and message["X-Priority"].startswith("1")
    cached_id = bob.inbox_id(sent["message_id"])  # through bob's sync
    [received] = [m for m in bob.listing() if m["id"] == cached_id]
    assert received["urgent"] is True


def test_a_forward_keeps_the_originals_attachments_and_quotes_its_text(
    alice, bob, http, dovecot_services, dovecot
) -> None:
    carol = Doctor.create(http, dovecot_services, dovecot)
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 20
    response = bob.http.post(
        f"/api/v1/mailboxes/{bob.mailbox_id}/messages",
        data={
            "to": [alice.address],
            "subject": "Scanner thoracique",
            "text": "Pas d'embolie.",
            "attachments": [(io.BytesIO(pdf), "scanner.pdf", "application/pdf")],
        },
        headers=bob.headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, body(response)
    original_id = alice.inbox_id(body(response)["message_id"])

    sent = alice.sent(
        to=[carol.address],
        subject="Tr: Scanner thoracique",
        text="Pour avis.",
        forward_of=original_id,
    )

    message, _flags = carol.find("INBOX", sent["message_id"])
    assert message["Subject"] == "Tr: Scanner thoracique"
    text = _text(message)
    assert text.startswith("Pour avis.") and "Message transféré" in text
    assert "Pas d'embolie." in text
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "scanner.pdf"
    assert attachment.get_content() == pdf


def test_reply_all_writes_to_everyone_the_original_went_to_but_the_mailbox(
    alice, bob, http, dovecot_services, dovecot
) -> None:
    carol = Doctor.create(http, dovecot_services, dovecot)
    asked = bob.sent(to=[alice.address], cc=[carol.address], subject="RCP de jeudi")
    original_id = alice.inbox_id(asked["message_id"])

    sent = alice.sent(
        to=[bob.address], subject="Re: RCP de jeudi", in_reply_to=original_id, reply_all=True
    )

    [relayed] = relayed_with(dovecot, sent["message_id"])
    assert set(relayed.recipients) == {bob.address, carol.address}
    message, _flags = carol.find("INBOX", sent["message_id"])
    assert [a.addr_spec for a in message["To"].addresses] == [bob.address]
    assert [a.addr_spec for a in message["Cc"].addresses] == [carol.address]
    assert message["In-Reply-To"] == asked["message_id"]


def test_a_forward_of_another_mailboxs_message_is_refused(alice, bob, dovecot) -> None:
    asked = alice.sent(to=[bob.address])
    theirs = bob.inbox_id(asked["message_id"])
    before = len(dovecot.relayed)
    response = alice.send(to=[bob.address], forward_of=theirs)
    assert response.status_code == 404, body(response)  # not hers to see
    assert len(dovecot.relayed) == before


def test_html_goes_sanitised_with_a_plain_text_alternative(alice, bob) -> None:
    html = (
        "<p>Voir <b>ci-dessous</b>.</p><script>alert(1)</script>"
        '<img src="https://tracker.example/p.gif"><a href="https://ans.sante.fr">ANS</a>'
    )
    sent = alice.sent(to=[bob.address], subject="Mise en forme", text="", html=html)

    message, _flags = bob.find("INBOX", sent["message_id"])
    assert message.get_content_type() == "multipart/alternative"
    plain = _text(message)
    rich = message.get_body(("html",)).get_content()
    assert "Voir ci-dessous." in plain and "<" not in plain
    assert "<b>ci-dessous</b>" in rich
    assert "script" not in rich and "tracker.example" not in rich
