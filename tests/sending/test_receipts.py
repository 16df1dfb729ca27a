"""Read receipts (RFC 8098 MDN) and delivery reports (RFC 3464 DSN) shown on the original."""

from __future__ import annotations

import json
from email import message_from_bytes, policy

from sqlalchemy import func, select

from backend.storage.models import Mailbox, Message, OutboxEvent
from tests.messages.support import audit_rows, audit_text
from tests.sending.support import relayed_with
from tests.support import body, wait_until
from tests.sync.support import RunningWorker


def _sent_envelope(doctor, message_id: str) -> dict:
    [envelope] = [m for m in doctor.listing("Sent") if m["id"] == message_id]
    return envelope


def _outbox_rows(doctor) -> int:
    with doctor.services.sessions() as db:
        return db.scalar(
            select(func.count(OutboxEvent.id))
            .join(Mailbox, Mailbox.id == OutboxEvent.mailbox_id)
            .where(Mailbox.public_id == doctor.mailbox_id)
        )


def test_read_receipt_round_trip(alice, bob, dovecot) -> None:
    sent = alice.sent(to=[bob.address], subject="À lire", request_read_receipt=True)
    original, _flags = bob.find("INBOX", sent["message_id"])
    assert original["Disposition-Notification-To"] == f"<{alice.address}>"
    received = bob.inbox_id(sent["message_id"])
    assert [m["mdn_requested"] for m in bob.listing() if m["id"] == received] == [True]

    response = bob.read_receipt(received)

    assert response.status_code == 202, body(response)
    [relayed] = relayed_with(dovecot, body(response)["message_id"])
    mdn = message_from_bytes(relayed.data, policy=policy.default)
    assert mdn.get_content_type() == "multipart/report"
    assert mdn.get_param("report-type") == "disposition-notification"
    assert relayed.mail_from == "", "an MDN's envelope sender is null (RFC 8098 §2.1)"
    report = relayed.data.decode()
    assert f"Original-Message-ID: {sent['message_id']}" in report
    assert "Disposition: manual-action/MDN-sent-manually; displayed" in report
    assert f"Final-Recipient: rfc822;{bob.address}" in report

    alice.sync()
    receipts = _sent_envelope(alice, sent["id"])["receipts"]
    assert [(r["type"], r["recipient"]) for r in receipts] == [("read", bob.address)]
    assert alice.listing("INBOX") == [], "the MDN is a receipt, not a loose mail"
    assert _outbox_rows(alice) == 0, "a receipt is not announced as new mail"
    [record] = audit_rows(bob.services, "message.read_receipt")
    assert (record.outcome, record.target) == ("ok", received)


def test_a_second_read_receipt_for_the_same_message_is_a_conflict(alice, bob, dovecot) -> None:
    sent = alice.sent(to=[bob.address], request_read_receipt=True)
    received = bob.inbox_id(sent["message_id"])
    assert bob.read_receipt(received).status_code == 202
    before = len(dovecot.relayed)

    again = bob.read_receipt(received)

    assert again.status_code == 409
    assert len(dovecot.relayed) == before


def test_no_read_receipt_when_the_sender_asked_for_none(alice, bob, dovecot) -> None:
    sent = alice.sent(to=[bob.address])
    received = bob.inbox_id(sent["message_id"])
    before = len(dovecot.relayed)

    response = bob.read_receipt(received)

    assert response.status_code == 409
    assert body(response)["code"] == "conflict"
    assert len(dovecot.relayed) == before


def test_a_read_receipt_is_not_sent_outside_the_trust_space(bob, dovecot) -> None:
    dovecot.deliver(
        bob.address,
        b"From: <x@gmail.com>\r\nSubject: hello\r\nMessage-ID: <g1@gmail.com>\r\n"
        b"Disposition-Notification-To: <tracker@gmail.com>\r\n\r\nhi\r\n",
    )
    received = bob.inbox_id("<g1@gmail.com>")
    before = len(dovecot.relayed)

    response = bob.read_receipt(received)

    assert response.status_code == 422
    assert body(response)["code"] == "recipient_outside_trust_space"
    assert len(dovecot.relayed) == before


def test_another_users_message_gets_no_read_receipt(alice, bob) -> None:
    sent = alice.sent(to=[bob.address], request_read_receipt=True)
    received = bob.inbox_id(sent["message_id"])

    assert alice.read_receipt(received).status_code == 404


def _dsn(to: str, reporting: str, original_id: str, action: str, status: str) -> bytes:
    """A DSN shaped like Postfix's: human part, delivery-status, the original's headers."""
    return (
        f"From: MAILER-DAEMON@mx.chu-test.mssante.fr\r\nTo: <{to}>\r\n"
        "Subject: Delivery Status Notification\r\nMessage-ID: <dsn-1@mx.chu-test.mssante.fr>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message was processed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.chu-test.mssante.fr\r\n\r\n"
        f"Final-Recipient: rfc822; {reporting}\r\nAction: {action}\r\nStatus: {status}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: <{to}>\r\nSubject: secret\r\nMessage-ID: {original_id}\r\n\r\n"
        "--B--\r\n"
    ).encode()


def _sent_with_two_delivery_reports(alice, bob, dovecot) -> dict:
    """Alice writes to Bob and to an absent address; one DSN says delivered, one failed."""
    sent = alice.sent(to=[bob.address, "absent@chu-test.mssante.fr"])
    dovecot.deliver(
        alice.address, _dsn(alice.address, bob.address, sent["message_id"], "delivered", "2.0.0")
    )
    dovecot.deliver(
        alice.address,
        _dsn(alice.address, "absent@chu-test.mssante.fr", sent["message_id"], "failed", "5.1.1"),
    )
    return sent


def test_delivery_reports_show_on_the_original(alice, bob, dovecot) -> None:
    sent = _sent_with_two_delivery_reports(alice, bob, dovecot)

    alice.sync()

    receipts = _sent_envelope(alice, sent["id"])["receipts"]
    assert [(r["type"], r["recipient"]) for r in receipts] == [
        ("delivered", bob.address),
        ("failed", "absent@chu-test.mssante.fr"),
    ]
    assert alice.listing("INBOX") == []
    assert _outbox_rows(alice) == 0


def test_a_report_about_an_unknown_message_stays_a_visible_mail(alice, dovecot) -> None:
    dovecot.deliver(
        alice.address,
        _dsn(alice.address, "x@chu-test.mssante.fr", "<unknown@elsewhere>", "failed", "5.1.1"),
    )

    alice.sync()

    [kept] = alice.listing("INBOX")
    assert kept["subject"] == "Delivery Status Notification"


def test_a_receipt_changes_the_original_for_delta_sync(alice, bob) -> None:
    sent = alice.sent(to=[bob.address], request_read_receipt=True)
    with alice.services.sessions() as db:
        before = db.scalar(select(Message.change_seq).where(Message.public_id == sent["id"]))
    bob.read_receipt(bob.inbox_id(sent["message_id"]))

    alice.sync()

    with alice.services.sessions() as db:
        after = db.scalar(select(Message.change_seq).where(Message.public_id == sent["id"]))
    assert after > before


def test_a_received_read_receipt_is_audited_with_opaque_ids_only(alice, bob) -> None:
    sent = alice.sent(to=[bob.address], subject="Secret de consultation", request_read_receipt=True)
    bob.read_receipt(bob.inbox_id(sent["message_id"]))

    alice.sync()

    [record] = audit_rows(alice.services, "message.receipt_received")
    assert (record.actor, record.outcome, record.target_type) == ("system", "ok", "message")
    assert (record.target, record.mailbox) == (sent["id"], alice.mailbox_id)
    assert json.loads(record.details) == {"types": "read", "recipients": 1}
    trail = audit_text(alice.services)
    assert bob.address not in trail
    assert "Secret de consultation" not in trail
    assert sent["message_id"] not in trail


def test_each_received_delivery_report_is_audited_once(alice, bob, dovecot) -> None:
    sent = _sent_with_two_delivery_reports(alice, bob, dovecot)

    alice.sync()
    alice.sync()

    records = audit_rows(alice.services, "message.receipt_received")
    assert [(r.target, json.loads(r.details)["types"]) for r in records] == [
        (sent["id"], "delivered"),
        (sent["id"], "failed"),
    ]


def test_a_report_about_an_unknown_message_is_not_audited_as_a_receipt(alice, dovecot) -> None:
    dovecot.deliver(
        alice.address,
        _dsn(alice.address, "x@chu-test.mssante.fr", "<unknown@elsewhere>", "failed", "5.1.1"),
    )

    alice.sync()

    assert audit_rows(alice.services, "message.receipt_received") == []


def test_a_delivery_report_without_returned_headers_is_matched_by_its_envelope_id(
    alice, bob, dsn_relay
) -> None:
    sent = alice.sent(to=[bob.address])
    [relayed] = relayed_with(dsn_relay, sent["message_id"])
    envid = next(p for p in relayed.mail_params.split() if p.startswith("ENVID=")).split("=", 1)[1]
    dovecot_dsn = (
        f"From: MAILER-DAEMON@mx.chu-test.mssante.fr\r\nTo: <{alice.address}>\r\n"
        "Subject: Delivery Status Notification\r\nMessage-ID: <dsn-2@mx.chu-test.mssante.fr>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.chu-test.mssante.fr\r\nOriginal-Envelope-Id: {envid}\r\n\r\n"
        f"Final-Recipient: rfc822; {bob.address}\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
        "--B--\r\n"
    ).encode()
    dsn_relay.deliver(alice.address, dovecot_dsn)

    alice.sync()

    receipts = _sent_envelope(alice, sent["id"])["receipts"]
    assert [(r["type"], r["recipient"]) for r in receipts] == [("delivered", bob.address)]
    assert alice.listing("INBOX") == []


def _cached_id(doctor, message_id_header: str) -> str | None:
    with doctor.services.sessions() as db:
        rows = db.scalars(
            select(Message)
            .join(Mailbox, Mailbox.id == Message.mailbox_id)
            .where(Mailbox.public_id == doctor.mailbox_id)
        ).all()
        return next((m.public_id for m in rows if m.message_id_header == message_id_header), None)


def test_the_sync_worker_audits_a_read_receipt_it_receives(alice, bob) -> None:
    sent = alice.sent(to=[bob.address], request_read_receipt=True)

    with RunningWorker(alice.services):
        wait_until(lambda: _cached_id(bob, sent["message_id"]), what="bob's INBOX in sync")
        response = bob.read_receipt(_cached_id(bob, sent["message_id"]))
        assert response.status_code == 202, body(response)
        wait_until(
            lambda: audit_rows(alice.services, "message.receipt_received"),
            what="the worker to attach and audit the MDN",
        )

    [record] = audit_rows(alice.services, "message.receipt_received")
    assert (record.target, record.mailbox) == (sent["id"], alice.mailbox_id)
    assert [r["type"] for r in _sent_envelope(alice, sent["id"])["receipts"]] == ["read"]
