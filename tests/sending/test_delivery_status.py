"""Delivery status: a DSN is asked for when offered (RFC 3461), refusals are reported.

The relay behind Dovecot's submission is the harness's SMTP sink; it can offer DSN and
refuse chosen recipients, and it records the MAIL and RCPT parameters that reached it.
"""

from __future__ import annotations

from backend.mail import smtp
from tests.messages.support import audit_rows, audit_text
from tests.sending.support import relayed_with
from tests.support import body

ABSENT = "absent.dr@chu-test.mssante.fr"


def _params(text: str) -> set[str]:
    return set(text.split())


def test_a_send_asks_for_a_delivery_status_when_the_server_offers_dsn(
    alice, bob, dsn_relay
) -> None:
    sent = alice.sent(to=[bob.address], cc=[ABSENT])

    assert sent["dsn_requested"] is True
    [relayed] = relayed_with(dsn_relay, sent["message_id"])
    envid = sent["message_id"].strip("<>")
    assert {"RET=HDRS", f"ENVID={envid}"} <= _params(relayed.mail_params)
    by_recipient = dict(zip(relayed.recipients, relayed.rcpt_params, strict=True))
    assert _params(by_recipient[bob.address]) == {
        "NOTIFY=SUCCESS,FAILURE",
        f"ORCPT=rfc822;{bob.address}",
    }
    assert _params(by_recipient[ABSENT]) == {"NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{ABSENT}"}
    assert bob.find("INBOX", sent["message_id"]) is not None


def test_no_dsn_parameter_is_sent_when_the_server_does_not_offer_dsn(alice, bob, dovecot) -> None:
    sent = alice.sent(to=[bob.address])

    assert sent["dsn_requested"] is False
    [relayed] = relayed_with(dovecot, sent["message_id"])
    assert not {"RET", "ENVID"} & {p.partition("=")[0] for p in _params(relayed.mail_params)}
    assert relayed.rcpt_params == ("",)


def test_a_read_receipt_asks_for_no_delivery_status_even_when_offered(
    alice, bob, dsn_relay
) -> None:
    sent = alice.sent(to=[bob.address], request_read_receipt=True)
    received = bob.inbox_id(sent["message_id"])

    response = bob.read_receipt(received)

    assert response.status_code == 202, body(response)
    [relayed] = relayed_with(dsn_relay, body(response)["message_id"])
    assert "RET=" not in relayed.mail_params, "an MDN must not ask for reports (RFC 8098 §2.1)"
    assert relayed.rcpt_params == ("",)


def test_envelope_ids_and_original_recipients_are_xtext_encoded() -> None:
    assert smtp.xtext("dr+cardio=1@chu.fr") == "dr+2Bcardio+3D1@chu.fr"
    assert smtp.xtext("é x") == "+C3+A9+20x"
    assert smtp.envelope_id("<abc.123@chu-test.mssante.fr>") == "abc.123@chu-test.mssante.fr"
    long_id = smtp.envelope_id(f"<{'x' * 120}@chu-test.mssante.fr>")
    assert len(long_id) <= smtp.ENVID_MAX


def test_partially_refused_recipients_are_listed_and_the_others_still_get_it(
    alice, bob, refusing_relay, dovecot
) -> None:
    refusing_relay.add(ABSENT)

    response = alice.send(to=[bob.address, ABSENT], subject="Compte rendu opératoire")

    assert response.status_code == 502
    problem = body(response)
    assert problem["code"] == "recipients_partially_refused"
    assert problem["refused"] == [ABSENT]
    message_id = problem["message_id"]
    [relayed] = relayed_with(dovecot, message_id)
    assert relayed.recipients == (bob.address,)
    assert bob.find("INBOX", message_id) is not None, "the accepted recipient got it"
    assert alice.find("Sent", message_id) is not None, "the Sent copy is kept"
    assert [m["id"] for m in alice.listing("Sent")] == [problem["id"]]
    [record] = audit_rows(alice.services, "message.send")
    assert (record.outcome, record.target) == ("failed", problem["id"])
    assert '"refused":1' in record.details
    assert '"code":"recipients_partially_refused"' in record.details
    assert ABSENT not in audit_text(alice.services)


def test_when_every_recipient_is_refused_nothing_is_kept_in_sent(
    alice, refusing_relay, dovecot
) -> None:
    refusing_relay.add(ABSENT)
    before = len(dovecot.relayed)

    response = alice.send(to=[ABSENT])

    assert response.status_code == 502
    assert body(response)["code"] == "send_failed"
    assert len(dovecot.relayed) == before
    assert alice.folder_messages("Sent") == []
    [record] = audit_rows(alice.services, "message.send")
    assert record.outcome == "failed"
