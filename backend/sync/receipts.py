"""Receipts: a received MDN (RFC 8098) or DSN (RFC 3464) becomes a receipt of its original.

Both arrive as `multipart/report` (RFC 6522). The sync reads the report part of such a
mail (`read_report`, one extra FETCH for reports only); the store (`backend.store.receipts`)
attaches it to the original message found by Message-ID: the original's envelope shows
`receipts: [{type, at, recipient}]`, and no "new mail" is announced. A report whose
original we do not know stays an ordinary message: never dropped.

Reports come from anywhere: every field is read as text by `envelope.field_text` (8-bit
garbage, NULs, RFC 6533 UTF-8 addresses) and cut before it is parsed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from email import policy
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value, parseaddr
from typing import Any

from backend.mail.envelope import Envelope, field_text, header_bytes
from backend.mail.imap import MailSession
from backend.store.receipts import (
    ADDRESS_LIMIT,
    ReceiptEnvelope,
    ReceiptLine,
    Report,
    normalize_message_id,
)

log = logging.getLogger("estafette.sync")

MDN_TYPE = "disposition-notification"
DSN_TYPE = "delivery-status"
# A report part is a few hundred bytes; anything much larger is not worth reading whole.
REPORT_PART_LIMIT = 64 * 1024

_MDN_DISPOSITIONS = {"displayed": "read", "deleted": "deleted"}
_DSN_ACTIONS = {
    "delivered": "delivered",
    "relayed": "delivered",
    "expanded": "delivered",
    "failed": "failed",
    "delayed": "delayed",
}

_headers = BytesHeaderParser(policy=policy.compat32)


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


def read_report(client: MailSession, data: dict[bytes, Any], envelope: Envelope) -> Envelope:
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
    client: MailSession,
    uid: int,
    kind: str,
    report_section: str | None,
    headers_section: str | None,
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
        # No returned headers: our ENVID is the Message-ID (backend/mail/smtp.py).
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
