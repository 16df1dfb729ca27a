"""Read receipts: RFC 8098 Message Disposition Notifications.

An MDN is a `multipart/report; report-type=disposition-notification` (RFC 6522) with a
human-readable part and a machine-readable `message/disposition-notification` part. The
human part names no subject, sender or patient: only that "a message was displayed".
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from backend.outgoing.compose import new_message_id
from backend.outgoing.headers import check_header_value
from backend.storage.models import utcnow

REPORTING_UA = "Estafette"
DISPLAYED = "manual-action/MDN-sent-manually; displayed"


@dataclass(frozen=True)
class Original:
    """What the MDN needs from the message being acknowledged."""

    message_id: str
    notify_to: str  # Disposition-Notification-To
    recipient: str  # our mailbox, which read it
    original_recipient: str | None = None  # the Original-Recipient header, if any


def notification_address(header_value: str | None) -> str | None:
    """The address in a Disposition-Notification-To header, or None if unusable."""
    if not header_value:
        return None
    _name, address = parseaddr(header_value)
    return address if "@" in address else None


def build_mdn(original: Original, *, sender_name: str | None = None) -> EmailMessage:
    """A `displayed` MDN for `original`, sent manually by the user (RFC 8098 §3.2.6).

    The original's Message-ID and Original-Recipient come from a received mail: they are
    checked like any header value before they enter the report (`UnsafeHeader`).
    """
    check_header_value("sender_name", sender_name)
    check_header_value("message_id", original.message_id)
    check_header_value("disposition_notification_to", original.notify_to)
    check_header_value("original_recipient", original.original_recipient)
    report = EmailMessage(policy=policy.SMTP)
    report["From"] = (
        f"{sender_name} <{original.recipient}>" if sender_name else f"<{original.recipient}>"
    )
    report["To"] = f"<{original.notify_to}>"
    report["Subject"] = "Accusé de lecture / Read receipt"
    report["Date"] = format_datetime(utcnow())
    report["Message-ID"] = new_message_id(original.recipient)
    # Threading headers let mail clients, and our own sync, tie it to the original at once.
    report["In-Reply-To"] = original.message_id
    report["References"] = original.message_id
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834; stops auto-responders looping
    report["MIME-Version"] = "1.0"
    report.make_mixed()
    report.replace_header("Content-Type", "multipart/report")
    report.set_param("report-type", "disposition-notification")

    human = EmailMessage(policy=policy.SMTP)
    human.set_content(
        f"Le message {original.message_id} envoyé à {original.recipient} a été affiché.\n"
        f"The message {original.message_id} sent to {original.recipient} was displayed.\n",
        cte="quoted-printable",
    )
    report.attach(human)

    fields = [f"Reporting-UA: {REPORTING_UA}"]
    if original.original_recipient:
        fields.append(f"Original-Recipient: {original.original_recipient}")
    fields += [
        f"Final-Recipient: rfc822;{original.recipient}",
        f"Original-Message-ID: {original.message_id}",
        f"Disposition: {DISPLAYED}",
    ]
    machine = EmailMessage(policy=policy.SMTP)
    machine["Content-Type"] = "message/disposition-notification"
    machine["Content-Transfer-Encoding"] = "7bit"
    machine.set_payload("\r\n".join(fields) + "\r\n")
    report.attach(machine)
    return report
