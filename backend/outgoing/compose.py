"""Build an outgoing MSSanté message with the standard library's modern `email` API.

MSSanté rules applied here (DESIGN.md): `X-MSS-NIL` on every mail, `X-MSS-MES: FIN` when a
patient (`@patient.mssante.fr`) is among the recipients, `In-Reply-To`/`References` on
replies (RFC 5322 §3.6.4), and `Disposition-Notification-To` when a read receipt is asked
for (RFC 8098 §2.1).
"""

from __future__ import annotations

import copy as copy_module
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from backend.outgoing.headers import check_header_value
from backend.outgoing.trust_space import domain_of, is_patient_address
from backend.storage.models import utcnow

# RFC 5322 caps a line at 998 characters; References grows with each reply, so keep the
# first message (the thread's root) and the most recent ones (RFC 5322 §3.6.4 allows it).
MAX_REFERENCES = 20


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ReplyTo:
    """What a reply carries from its original: its Message-ID and References."""

    message_id: str
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class Draft:
    sender: str
    sender_name: str | None
    to: tuple[str, ...]
    subject: str
    text: str
    cc: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    reply_to: ReplyTo | None = None
    request_read_receipt: bool = False
    urgent: bool = False
    html: str | None = None  # already sanitised; `text` is its plain-text alternative
    nil: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def new_message_id(sender: str) -> str:
    """A globally unique Message-ID on the sender's own domain (RFC 5322 §3.6.4)."""
    return make_msgid(domain=domain_of(sender) or "estafette.invalid")


def references_for(reply: ReplyTo) -> list[str]:
    chain = [r for r in reply.references if r != reply.message_id] + [reply.message_id]
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    return chain


def _mailbox(address: str, name: str | None = None) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def check_draft_headers(draft: Draft) -> None:
    """Every header value the user or the original shaped, checked once decoded."""
    check_header_value("subject", draft.subject)
    check_header_value("sender_name", draft.sender_name)
    check_header_value("nil", draft.nil)
    for attachment in draft.attachments:
        check_header_value("attachments", attachment.filename)
    if draft.reply_to is not None:
        for reference in (draft.reply_to.message_id, *draft.reply_to.references):
            check_header_value("in_reply_to", reference)
    for name, value in draft.extra_headers.items():
        check_header_value(name, value)


def compose(draft: Draft, *, message_id: str | None = None) -> EmailMessage:
    """The complete RFC 5322 message, ready for SMTP and for the Sent folder.

    Raises `UnsafeHeader` (nothing built) for a value that would forge a header line.
    """
    check_draft_headers(draft)
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = _mailbox(draft.sender, draft.sender_name)
    if draft.to:  # a draft may have none yet
        message["To"] = [_mailbox(a) for a in draft.to]
    if draft.cc:
        message["Cc"] = [_mailbox(a) for a in draft.cc]
    message["Subject"] = draft.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id or new_message_id(draft.sender)
    if draft.reply_to is not None:
        message["In-Reply-To"] = draft.reply_to.message_id
        message["References"] = " ".join(references_for(draft.reply_to))
    if draft.nil:
        message["X-MSS-NIL"] = draft.nil
    if any(is_patient_address(a) for a in (*draft.to, *draft.cc)):
        message["X-MSS-MES"] = "FIN"
    if draft.request_read_receipt:
        message["Disposition-Notification-To"] = f"<{draft.sender}>"
    if draft.urgent:  # what the recipients' clients read as urgent, old and new
        message["Importance"] = "high"
        message["X-Priority"] = "1 (Highest)"
    for name, value in draft.extra_headers.items():
        message[name] = value
    message.set_content(draft.text)
    if draft.html:  # multipart/alternative: plain text first, the richer part last (RFC 2046)
        message.add_alternative(draft.html, subtype="html")
    for attachment in draft.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        if maintype in ("message", "multipart") or not subtype:
            # These may not be base64-encoded (RFC 2046 §5): send them as opaque bytes.
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(
            attachment.data,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
        )
    return message


def as_bytes(message: EmailMessage) -> bytes:
    """The wire form (CRLF line ends), as measured against the size limit and APPENDed."""
    return message.as_bytes(policy=policy.SMTP)


def sender_copy(message: EmailMessage, bcc: tuple[str, ...]) -> bytes:
    """The sender's own copy, for Sent: the sent message plus the Bcc it went to
    (RFC 5322 §3.6.3), which no recipient's copy ever shows."""
    if not bcc:
        return as_bytes(message)
    copy = copy_module.deepcopy(message)
    copy["Bcc"] = [_mailbox(a) for a in bcc]
    return as_bytes(copy)
