"""Receipts: a received MDN (RFC 8098) or DSN (RFC 3464) becomes a receipt of its original.

Both arrive as `multipart/report` (RFC 6522). The sync reads the report part of such a mail
(`read_report`, one extra FETCH for reports only), and the store attaches it to the
original message found by Message-ID (`attach_receipt`): the original's envelope shows
`receipts: [{type, at, recipient}]`, and no "new mail" is announced. A report whose
original we do not know stays an ordinary message: never dropped. What was attached is
audited once the sync transaction has committed (`audit_received`): the audit trail writes
in a transaction of its own, which must not wait on ours.

Reports come from anywhere: every field is read as text by `envelope.field_text` (8-bit
garbage, NULs, RFC 6533 UTF-8 addresses) and cut before it is parsed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value, parseaddr
from typing import Any

from imapclient import IMAPClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.audit.trail import AuditTrail
from backend.directory import changes
from backend.mail.envelope import Envelope, field_text, header_bytes
from backend.storage.encryption import lookup_digest
from backend.storage.models import Mailbox, Message

log = logging.getLogger("estafette.sync")

MDN_TYPE = "disposition-notification"
DSN_TYPE = "delivery-status"
# A report part is a few hundred bytes; anything much larger is not worth reading whole.
REPORT_PART_LIMIT = 64 * 1024
ADDRESS_LIMIT = 998  # RFC 5322 §2.1.1: no longer line; a longer "address" is not one

_MDN_DISPOSITIONS = {"displayed": "read", "deleted": "deleted"}
_DSN_ACTIONS = {
    "delivered": "delivered",
    "relayed": "delivered",
    "expanded": "delivered",
    "failed": "failed",
    "delayed": "delayed",
}

_headers = BytesHeaderParser(policy=policy.compat32)


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


def _get(fields: Any, name: str) -> str | None:
    """A field as text, from its raw value: compat32's `get` makes 8-bit values `Header`s."""
    wanted = name.lower()
    for key, value in fields.raw_items():
        if str(key).strip().lower() == wanted:
            return field_text(value)
    return None


# -- reading reports over IMAP ------------------------------------------------------------


def _report_type(raw_headers: bytes) -> str | None:
    headers = _headers.parsebytes(raw_headers or b"")
    if headers.get_content_type() != "multipart/report":
        return None
    kind = collapse_rfc2231_value(headers.get_param("report-type") or "")
    kind = str(kind).lower()
    return kind if kind in (MDN_TYPE, DSN_TYPE) else None


def _part_plan(bodystructure: Any) -> tuple[str | None, str | None]:
    """BODY[] sections of the machine-readable report and of the returned headers."""
    report_section = headers_section = None
    try:
        parts = bodystructure[0] if bodystructure.is_multipart else []
    except (AttributeError, IndexError, TypeError):
        return None, None
    for index, part in enumerate(parts, start=1):
        try:
            if isinstance(part[0], list):
                continue  # a nested multipart
            kind = f"{part[0].decode().lower()}/{part[1].decode().lower()}"
        except (AttributeError, IndexError, UnicodeDecodeError):
            continue
        if kind in (
            "message/disposition-notification",
            "message/delivery-status",
            "message/global-disposition-notification",
            "message/global-delivery-status",
        ):
            report_section = str(index)
        elif kind in ("text/rfc822-headers", "message/global-headers"):
            headers_section = str(index)
        elif kind in ("message/rfc822", "message/global"):
            headers_section = f"{index}.HEADER"
    return report_section, headers_section


def read_report(client: IMAPClient, data: dict[bytes, Any], envelope: Envelope) -> Envelope:
    """The envelope of an MDN/DSN message comes back as a ReceiptEnvelope; others unchanged.

    A report we cannot read stays an ordinary mail (logged by uid, never by content).
    """
    kind = _report_type(header_bytes(data))
    if kind is None:
        return envelope
    report_section, headers_section = _part_plan(data.get(b"BODYSTRUCTURE"))
    try:
        report = _fetch_report(client, envelope.uid, kind, report_section, headers_section)
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        log.warning("unreadable %s report (uid %s): %s", kind, envelope.uid, type(exc).__name__)
        report = None
    values = {f.name: getattr(envelope, f.name) for f in fields(envelope)}
    return ReceiptEnvelope(**values, report=report)


def _fetch_report(
    client: IMAPClient, uid: int, kind: str, report_section: str | None, headers_section: str | None
) -> Report | None:
    sections = [s for s in (report_section, headers_section) if s]
    if not sections:
        return None
    items = [f"BODY.PEEK[{s}]<0.{REPORT_PART_LIMIT}>" for s in sections]
    data = client.fetch([uid], items).get(uid, {})
    by_section = {}
    for key, value in data.items():
        text = key.decode() if isinstance(key, bytes) else str(key)
        if text.startswith("BODY["):
            by_section[text[5:].split("]", 1)[0]] = bytes(value or b"")
    report_bytes = by_section.get(report_section or "", b"")
    returned = _headers.parsebytes(by_section.get(headers_section or "", b""))
    returned_id = normalize_message_id(_get(returned, "Message-ID"))
    if kind == MDN_TYPE:
        return _parse_mdn(report_bytes, returned_id)
    return _parse_dsn(report_bytes, returned_id)


def _address(field: str | None) -> str | None:
    """`rfc822;addr` (RFC 3464 §2.1.2 address-type;address) to the address."""
    if not field or len(field) > ADDRESS_LIMIT:
        return None
    value = field.split(";", 1)[-1].strip()
    address = parseaddr(value)[1] or value
    return address.lower() if "@" in address else None


def _parse_mdn(data: bytes, returned_id: str | None) -> Report:
    fields_ = _headers.parsebytes(data.lstrip())
    disposition = (_get(fields_, "Disposition") or "").split(";", 1)[-1].strip().lower()
    disposition = disposition.split("/", 1)[0].strip()
    return Report(
        original_message_id=normalize_message_id(_get(fields_, "Original-Message-ID"))
        or returned_id,
        lines=(
            ReceiptLine(
                type=_MDN_DISPOSITIONS.get(disposition, "processed"),
                recipient=_address(_get(fields_, "Final-Recipient")),
            ),
        ),
    )


def _parse_dsn(data: bytes, returned_id: str | None) -> Report:
    """Per-message fields, then one block per recipient, separated by blank lines."""
    blocks = [b for b in data.replace(b"\r\n", b"\n").split(b"\n\n") if b.strip()]
    if returned_id is None and blocks:
        # No returned headers: our ENVID is the Message-ID (backend/outgoing/smtp.py).
        per_message = _headers.parsebytes(blocks[0].strip() + b"\n")
        envid = _unxtext(_get(per_message, "Original-Envelope-Id") or "")
        returned_id = normalize_message_id(envid) if "@" in envid else None
    lines = []
    for block in blocks[1:]:
        block_fields = _headers.parsebytes(block.strip() + b"\n")
        action = (_get(block_fields, "Action") or "").strip().lower()
        if action in _DSN_ACTIONS:
            lines.append(
                ReceiptLine(
                    type=_DSN_ACTIONS[action],
                    recipient=_address(_get(block_fields, "Final-Recipient")),
                )
            )
    return Report(original_message_id=returned_id, lines=tuple(lines))


def _unxtext(value: str) -> str:
    """RFC 3461 §4: decode the +HH escapes of an xtext (undecodable: left as is)."""
    try:
        return (
            re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value.strip())
            .encode("latin-1")
            .decode("utf-8")
        )
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value.strip()


# -- attaching them in the store ----------------------------------------------------------


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
            outcome="ok",
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
        message.change_seq = changes.next_change_seq(db, message.mailbox_id)
        db.flush()
