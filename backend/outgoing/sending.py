"""Sending from the phone: a new message or a reply, and read receipts (MDN).

The order guarantees that nothing leaves the trust space and nothing is lost silently:
the trust-space check comes first (a refusal sends nothing), then the size limit, then
SMTP submission; only a message the server accepted is APPENDed to Sent (so the desktop
client sees it) and cached. A refusal or an unreachable server is raised to the caller.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, replace
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from sqlalchemy.orm import Session

from backend import errors
from backend.config import Settings
from backend.directory import annuaire
from backend.directory import search as directory
from backend.mail import smtp
from backend.mail.endpoints import smtp_endpoint_for
from backend.mail.imap import (
    SEEN,
    MailSession,
    ProtocolError,
)
from backend.mail.sessions import imap_session
from backend.mailboxes import change_log
from backend.outgoing import appended, forward, mdn
from backend.outgoing import compose as composer
from backend.outgoing.trust_space import TrustSpaceUnreadable, load_trust_space
from backend.reading.messages import Located
from backend.reading.server import fetch_raw
from backend.storage.models import Mailbox

log = logging.getLogger("estafette.outgoing")

NOT_SENT = "The mailbox server cannot be reached right now; nothing was sent"
ANSWERED = b"\\Answered"
MDN_SENT = b"$MDNSent"  # RFC 3503: this message's MDN was already sent
_header_parser = BytesHeaderParser(policy=policy.default)


@dataclass(frozen=True)
class SendRequest:
    to: tuple[str, ...]
    subject: str
    text: str
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()  # in the SMTP envelope only, never in a recipient's headers
    attachments: tuple[composer.Attachment, ...] = ()
    in_reply_to: Located | None = None
    reply_all: bool = False  # with in_reply_to: the original's other recipients in cc
    forward_of: Located | None = None  # its text quoted, its attachments attached again
    request_read_receipt: bool = False
    urgent: bool = False
    html: str | None = None  # sanitised; `text` is its plain-text alternative


@dataclass(frozen=True)
class SentMessage:
    """The outcome: `id` is the cached Sent copy (None if the copy could not be stored)."""

    id: str | None
    message_id: str
    dsn_requested: bool
    sent_copy: bool
    # Sent, but worth a second look: e.g. a recipient unknown to the national directory.
    warnings: tuple[dict[str, str], ...] = ()


def check_trust_space(settings: Settings, field_addresses: dict[str, tuple[str, ...]]) -> None:
    """Refuse, before anything is sent, any recipient outside the MSSanté trust space."""
    try:
        space = load_trust_space(settings.trust_space)
    except TrustSpaceUnreadable as exc:
        log.error("trust space unusable, refusing to send: %s", exc)
        raise errors.MailboxUnavailable(
            "The list of MSSanté domains cannot be read; nothing was sent"
        ) from exc
    problems = {
        field: [f"{a} is outside the MSSanté trust space" for a in outsiders]
        for field, addresses in field_addresses.items()
        if (outsiders := space.outsiders(addresses))
    }
    if problems:
        offending = [a for addrs in field_addresses.values() for a in space.outsiders(addrs)]
        raise errors.RecipientOutsideTrustSpace(
            "Only MSSanté addresses may receive this mail; nothing was sent",
            errors=problems,
            recipients=offending,
        )


def check_directory(
    db: Session, settings: Settings, field_addresses: dict[str, tuple[str, ...]]
) -> tuple[dict[str, str], ...]:
    """Recipients the national directory does not know: warnings, or (if the admin chose
    `refuse`) a refusal before anything is sent. The file is a day old, so by default a
    new colleague's address is not refused, and with an API key the Annuaire Santé's
    FHIR API is asked about the addresses the file lacks."""
    unknown = set(
        directory.unknown_addresses(
            db=db, addresses=[a for addrs in field_addresses.values() for a in addrs]
        )
    )
    unknown -= annuaire.confirmed_by_api(settings, sorted(unknown))
    if not unknown:
        return ()
    if settings.directory_unknown_recipients == "refuse":
        raise errors.RecipientNotInDirectory(
            "These addresses are not in the national MSSanté directory; nothing was sent",
            errors={
                field: [f"{a} is not in the MSSanté directory" for a in missing]
                for field, addrs in field_addresses.items()
                if (missing := [a for a in addrs if a.lower() in unknown])
            },
            recipients=sorted(unknown),
        )
    return tuple(
        {"code": "recipient_not_in_directory", "field": field, "address": address}
        for field, addrs in field_addresses.items()
        for address in addrs
        if address.lower() in unknown
    )


def size_limit(mailbox: Mailbox, settings: Settings) -> int:
    return mailbox.max_message_bytes or settings.max_message_bytes


def _fetch_headers(client: MailSession, located: Located, names: list[str]) -> tuple[dict, set]:
    """Selected header fields and flags of a cached message, read from its server."""
    try:
        client.select_folder(located.folder.name)
        response = client.fetch(
            [located.message.uid], [f"BODY.PEEK[HEADER.FIELDS ({' '.join(names)})]", "FLAGS"]
        )
    except (ProtocolError, OSError, ssl.SSLError) as exc:
        raise errors.MailboxUnavailable("The mailbox server broke the session") from exc
    data = response.get(located.message.uid)
    if not data:
        raise errors.NotFound("this message is no longer on the server")
    raw = next((v for k, v in data.items() if k.startswith(b"BODY[")), b"") or b""
    parsed = _header_parser.parsebytes(raw)
    headers = {}
    for name in names:
        try:
            value = parsed.get(name)
        except (ValueError, IndexError, TypeError):  # a header that does not parse
            value = None
        headers[name.lower()] = None if value is None else str(value)
    return headers, {bytes(f) for f in data.get(b"FLAGS", ())}


def _fetch_raw(client: MailSession, located: Located) -> bytes:
    """The whole original, as the desktop reads it, for a forward."""
    try:
        client.select_folder(located.folder.name, readonly=True)
        return fetch_raw(client, located.message.uid)
    except (ProtocolError, OSError, ssl.SSLError) as exc:
        raise errors.MailboxUnavailable("The mailbox server broke the session") from exc


def _reply_to(client: MailSession, original: Located) -> composer.ReplyTo | None:
    headers, _flags = _fetch_headers(client, original, ["MESSAGE-ID", "REFERENCES"])
    message_id = (headers.get("message-id") or original.message.message_id_header or "").strip()
    if not message_id:
        return None  # nothing to thread on: the reply goes out as a new conversation
    references = tuple((headers.get("references") or "").split())
    return composer.ReplyTo(message_id=message_id, references=references)


def _submit(
    mailbox: Mailbox,
    settings: Settings,
    message: EmailMessage,
    *,
    envelope_from: str,
    recipients: tuple[str, ...],
    request_dsn: bool,
) -> smtp.Submitted:
    endpoint = smtp_endpoint_for(mailbox, settings)
    try:
        with smtp.connect(endpoint, ca_bundle=settings.ca_bundle) as session:
            submitted = smtp.send(
                session,
                message,
                envelope_from=envelope_from,
                recipients=recipients,
                request_dsn=request_dsn,
            )
    except smtp.SmtpUnavailable as exc:
        log.warning("send failed for mailbox %s: %s", mailbox.public_id, exc)
        raise errors.MailboxUnavailable(
            "The mail server cannot be reached right now; nothing was sent"
        ) from exc
    except smtp.SmtpRefused as exc:
        log.warning("send refused for mailbox %s: %s", mailbox.public_id, exc)
        raise errors.SendFailed(f"The mail server refused the message: {exc}") from exc
    return submitted


def send_message(
    *, db: Session, settings: Settings, mailbox: Mailbox, request: SendRequest
) -> SentMessage:
    """Check, compose, submit, then keep a \\Seen copy in Sent and mark the original answered."""
    original = request.in_reply_to
    if original is not None and request.reply_all:
        request = replace(
            request,
            cc=forward.reply_all_cc(original.message, mailbox.address, request.to, request.cc),
        )
    recipients_by_field = {"to": request.to, "cc": request.cc, "bcc": request.bcc}
    check_trust_space(settings, recipients_by_field)
    warnings = check_directory(db, settings, recipients_by_field)
    with imap_session(mailbox, settings, unreachable=NOT_SENT) as client:
        text, attachments = request.text, request.attachments
        if request.forward_of is not None:
            raw_original = _fetch_raw(client, request.forward_of)
            text, carried = forward.forwarded(raw_original, request.text)
            attachments = (*carried, *attachments)
        draft = composer.Draft(
            sender=mailbox.address,
            sender_name=mailbox.display_name,
            to=request.to,
            cc=request.cc,
            subject=request.subject,
            text=text,
            attachments=attachments,
            reply_to=_reply_to(client, original) if original is not None else None,
            request_read_receipt=request.request_read_receipt,
            urgent=request.urgent,
            html=request.html,
            nil=settings.nil,
        )
        try:
            message = composer.compose(draft)
            raw = composer.as_bytes(message)
        except (ValueError, TypeError, UnicodeError) as exc:
            # The schema should have refused it; a mail we cannot build is the client's 422.
            raise errors.ValidationFailed({"_schema": ["This message cannot be encoded."]}) from exc
        limit = size_limit(mailbox, settings)
        if len(raw) > limit:
            raise errors.PayloadTooLarge(
                f"The message would be {len(raw)} bytes; this mailbox sends at most {limit}",
                limit=limit,
                size=len(raw),
            )
        recipients = tuple(
            dict.fromkeys(a.lower() for a in (*request.to, *request.cc, *request.bcc))
        )
        submitted = _submit(
            mailbox,
            settings,
            message,
            envelope_from=mailbox.address,
            recipients=recipients,
            request_dsn=True,
        )
        public_id = _keep_sent_copy(
            db,
            client,
            mailbox,
            composer.sender_copy(message, request.bcc),
            has_attachments=bool(draft.attachments),
        )
        if original is not None and _mark_answered(client, original):
            original.message.answered = True
            original.message.change_seq = change_log.next_change_seq(db, mailbox.id)
            db.commit()
    if submitted.refused:
        raise errors.RecipientsPartiallyRefused(
            f"{len(submitted.refused)} of {len(recipients)} recipients were refused; "
            "the others received the message",
            refused=list(submitted.refused),
            id=public_id,
            message_id=str(message["Message-ID"]),
        )
    return SentMessage(
        id=public_id,
        message_id=str(message["Message-ID"]),
        dsn_requested=submitted.dsn_requested,
        sent_copy=public_id is not None,
        warnings=warnings,
    )


def _keep_sent_copy(
    db: Session, client: MailSession, mailbox: Mailbox, raw: bytes, *, has_attachments: bool
) -> str | None:
    """APPEND to the \\Sent folder (RFC 6154) with \\Seen, and cache it by its APPENDUID.

    The mail is already sent: a failure here is logged and reported as a missing copy,
    never turned into a send error (the user would send it twice).
    """
    try:
        return appended.append_and_cache(
            db, client, mailbox, raw, role="sent", flags=(SEEN,), has_attachments=has_attachments
        )
    except (ProtocolError, OSError, ssl.SSLError) as exc:
        log.warning("sent copy not stored for mailbox %s: %s", mailbox.public_id, exc)
        return None


def _mark_answered(client: MailSession, original: Located) -> bool:
    """\\Answered on the original, as a desktop client would set it (best effort)."""
    try:
        client.select_folder(original.folder.name)
        client.add_flags([original.message.uid], [ANSWERED], silent=True)
    except (ProtocolError, OSError, ssl.SSLError) as exc:
        log.info("could not mark message %s answered: %s", original.message.public_id, exc)
        return False
    return True


def send_read_receipt(*, settings: Settings, located: Located) -> str:
    """Send the RFC 8098 MDN the original's sender asked for; return its Message-ID."""
    mailbox = located.mailbox
    with imap_session(mailbox, settings, unreachable=NOT_SENT) as client:
        headers, flags = _fetch_headers(
            client, located, ["MESSAGE-ID", "DISPOSITION-NOTIFICATION-TO", "ORIGINAL-RECIPIENT"]
        )
        notify_to = mdn.notification_address(headers.get("disposition-notification-to"))
        message_id = (headers.get("message-id") or "").strip()
        if notify_to is None or not message_id:
            raise errors.Conflict("The sender asked for no read receipt for this message")
        if MDN_SENT in flags:
            raise errors.Conflict("A read receipt was already sent for this message")
        check_trust_space(settings, {"disposition_notification_to": (notify_to,)})
        report = mdn.build_mdn(
            mdn.Original(
                message_id=message_id,
                notify_to=notify_to,
                recipient=mailbox.address,
                original_recipient=headers.get("original-recipient"),
            ),
            sender_name=mailbox.display_name,
        )
        # RFC 8098 §2.1: an MDN's envelope sender is null, so it never bounces back.
        _submit(
            mailbox,
            settings,
            report,
            envelope_from="",
            recipients=(notify_to,),
            request_dsn=False,
        )
        try:
            client.add_flags([located.message.uid], [MDN_SENT], silent=True)
        except (ProtocolError, OSError, ssl.SSLError) as exc:
            log.info("could not flag $MDNSent on %s: %s", located.message.public_id, exc)
    return str(report["Message-ID"])
