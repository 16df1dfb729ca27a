"""The message and the MDN as built, before any server sees them."""

from __future__ import annotations

from email import message_from_bytes, policy

from backend.outgoing.compose import Draft, ReplyTo, as_bytes, compose, references_for
from backend.outgoing.mdn import Original, build_mdn


def _draft(**overrides) -> Draft:
    values = {
        "sender": "dr.a@chu-test.mssante.fr",
        "sender_name": "Dr A",
        "to": ("dr.b@chu-test.mssante.fr",),
        "subject": "Objet",
        "text": "Texte",
        "nil": "NIL-123",
    }
    return Draft(**{**values, **overrides})


def test_without_a_configured_nil_the_header_is_left_out_not_invented() -> None:
    message = compose(_draft(nil=None))

    assert "X-MSS-NIL" not in message


def test_a_read_receipt_request_names_the_sender() -> None:
    message = compose(_draft(request_read_receipt=True))

    assert message["Disposition-Notification-To"] == "<dr.a@chu-test.mssante.fr>"


def test_references_keep_the_root_and_the_latest_messages_of_a_long_thread() -> None:
    chain = tuple(f"<m{i}@x>" for i in range(40))

    references = references_for(ReplyTo("<m40@x>", chain))

    assert len(references) == 20
    assert references[0] == "<m0@x>"
    assert references[-2:] == ["<m39@x>", "<m40@x>"]


def test_the_mdn_is_a_disposition_notification_report_without_content() -> None:
    report = build_mdn(
        Original(
            message_id="<orig@chu-test.mssante.fr>",
            notify_to="dr.a@chu-test.mssante.fr",
            recipient="dr.b@chu-test.mssante.fr",
        )
    )

    parsed = message_from_bytes(as_bytes(report), policy=policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "disposition-notification"
    human, machine = parsed.get_payload()
    assert machine.get_content_type() == "message/disposition-notification"
    assert parsed["In-Reply-To"] == "<orig@chu-test.mssante.fr>"
    assert parsed["MIME-Version"] == "1.0"
    assert "Subject" not in human
