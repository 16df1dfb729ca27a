"""Receipts in the store: a read or delivery report attached to the message it reports on.

The sync parses reports (`backend.sync.receipts`); here they are matched to their
original by Message-ID and recorded as its `receipts`, published to GET /sync, and
audited once the sync transaction has committed (`audit_received`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.audit.trail import AuditTrail, Outcome
from backend.mail.envelope import Envelope
from backend.mailboxes import change_log
from backend.storage.encryption import lookup_digest
from backend.storage.models import Mailbox, Message

ADDRESS_LIMIT = 998  # RFC 5322 §2.1.1: no longer line; a longer "address" is not one


@dataclass(frozen=True)
class ReceiptLine:
    """One recipient's outcome: read/deleted/processed (MDN), delivered/failed/delayed (DSN)."""

    type: str
    recipient: str | None


@dataclass(frozen=True)
class Report:
    original_message_id: str | None
    lines: tuple[ReceiptLine, ...]


@dataclass
class ReceiptEnvelope(Envelope):
    """An envelope whose message is a read or delivery report, with what it reports."""

    report: Report | None = None


def message_id_digest(message_id: str | None) -> str | None:
    """The lookup key of a Message-ID (HMAC: the Message-ID itself stays encrypted)."""
    normal = normalize_message_id(message_id)
    return lookup_digest(normal, "message-id") if normal else None


def normalize_message_id(message_id: str | None) -> str | None:
    if not message_id or not message_id.strip():
        return None
    inner = message_id.strip()[:ADDRESS_LIMIT].split()[0].strip("<>")
    return f"<{inner}>" if inner else None


@dataclass(frozen=True)
class Attached:
    """A report attached to its original: opaque ids and outcome types only, for the audit."""

    mailbox: str
    message: str
    types: tuple[str, ...]
    recipients: int


def attach_receipt(*, db: Session, mailbox_id: int, envelope: Envelope) -> Attached | None:
    """Attach a report to its original; None (store it as a mail) when that is unknown."""
    report = getattr(envelope, "report", None)
    if not isinstance(envelope, ReceiptEnvelope) or report is None or not report.lines:
        return None
    digest = message_id_digest(report.original_message_id)
    if digest is None:
        return None
    original = db.scalar(
        select(Message)
        .where(Message.mailbox_id == mailbox_id, Message.message_id_digest == digest)
        .order_by(Message.id)
        .limit(1)
    )
    if original is None:
        return None
    record_receipts(db=db, message=original, lines=report.lines, at=envelope.date)
    mailbox = db.scalar(select(Mailbox.public_id).where(Mailbox.id == mailbox_id))
    types = tuple(dict.fromkeys(line.type for line in report.lines))
    return Attached(
        mailbox=mailbox, message=original.public_id, types=types, recipients=len(report.lines)
    )


def audit_received(audit: AuditTrail, attached: list[Attached]) -> None:
    """One `message.receipt_received` record per report, after the sync has committed.

    Why after: AuditTrail.record takes the chain lock in its own transaction; inside the
    sync's open write transaction that would wait on ourselves (SQLite's single writer).
    """
    for item in attached:
        audit.record(
            "message.receipt_received",
            outcome=Outcome.OK,
            target_type="message",
            target=item.message,
            mailbox=item.mailbox,
            details={"types": ",".join(item.types), "recipients": item.recipients},
        )


def record_receipts(
    *, db: Session, message: Message, lines: tuple[ReceiptLine, ...], at: datetime
) -> None:
    """Add receipts to a message (idempotent) and publish the change to GET /sync."""
    current = list(message.receipts or [])
    stamp = at.isoformat()
    for line in lines:
        entry = {"type": line.type, "at": stamp, "recipient": line.recipient}
        if entry not in current:
            current.append(entry)
    if current != (message.receipts or []):
        message.receipts = current
        message.change_seq = change_log.next_change_seq(db, message.mailbox_id)
        db.flush()
