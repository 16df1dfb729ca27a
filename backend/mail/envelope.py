"""Turn what IMAP FETCH returns into the envelope we cache, with the standard `email` API.

A header that does not parse never drops the message: the envelope is kept with
`malformed` set, and the raw message stays readable on the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

# What we ask the server for each new message: headers only, the body stays on IMAP.
FETCH_ITEMS = ["UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE", "BODYSTRUCTURE", "BODY.PEEK[HEADER]"]
HEADER_KEY = b"BODY[HEADER]"

_parser = BytesHeaderParser(policy=policy.default)


@dataclass
class Envelope:
    uid: int
    date: datetime
    subject: str | None
    sender: dict[str, str | None] | None
    to: list[dict[str, str | None]]
    cc: list[dict[str, str | None]]
    message_id: str | None
    seen: bool
    flagged: bool
    answered: bool
    size: int
    has_attachments: bool
    mdn_requested: bool
    urgent: bool
    mss_headers: dict[str, str] = field(default_factory=dict)
    patient: dict[str, str | None] | None = None
    modseq: int | None = None
    malformed: bool = False


def flags_state(flags: tuple[bytes, ...] | list[bytes]) -> dict[str, bool]:
    """The three IMAP system flags the apps show (RFC 3501 §2.3.2)."""
    names = {
        f.decode(errors="replace").lower() if isinstance(f, bytes) else str(f).lower()
        for f in flags
    }
    return {
        "seen": "\\seen" in names,
        "flagged": "\\flagged" in names,
        "answered": "\\answered" in names,
    }


def _addresses(raw: str | None) -> list[dict[str, str | None]]:
    if not raw:
        return []
    return [
        {"name": name or None, "address": addr or None}
        for name, addr in getaddresses([raw])
        if name or addr
    ]


def _header(headers: Any, name: str) -> str | None:
    try:
        value = headers.get(name)
    except (ValueError, IndexError, TypeError):  # an unparseable structured header
        raw = headers.get_all(name, [None]) if hasattr(headers, "get_all") else [None]
        value = raw[0]
    return None if value is None else str(value)


def _has_attachments(bodystructure: Any) -> bool:
    """True if any part is an attachment (RFC 3501 BODYSTRUCTURE disposition)."""
    if bodystructure is None:
        return False
    try:
        if bodystructure.is_multipart:
            parts = bodystructure[0]
            return any(_has_attachments(part) for part in parts)
        for item in bodystructure:
            if (
                isinstance(item, tuple)
                and item
                and isinstance(item[0], bytes)
                and item[0].lower() == b"attachment"
            ):
                return True
        return False
    except (AttributeError, IndexError, TypeError):
        return False


def _date(headers: Any, internal: datetime | None) -> tuple[datetime, bool]:
    raw = _header(headers, "Date")
    try:
        parsed = parsedate_to_datetime(raw) if raw else None
    except (TypeError, ValueError):
        parsed = None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed is None:
        fallback = internal or datetime.now(UTC)
        if fallback.tzinfo is None:
            fallback = fallback.replace(tzinfo=UTC)
        return fallback.astimezone(UTC), raw is not None
    return parsed.astimezone(UTC), False


def parse_fetch(uid: int, data: dict[bytes, Any]) -> Envelope:
    """Build an Envelope from one FETCH response; never raises on bad headers."""
    raw_headers = data.get(HEADER_KEY, b"") or b""
    malformed = False
    try:
        headers = _parser.parsebytes(raw_headers)
        malformed = bool(headers.defects)
    except Exception:  # the stdlib parser is lenient; this is the last line of defence
        headers, malformed = _parser.parsebytes(b""), True
    date, bad_date = _date(headers, data.get(b"INTERNALDATE"))
    sender = _addresses(_header(headers, "From"))
    mss = {k.lower(): str(v) for k, v in headers.items() if k.lower().startswith("x-mss-")}
    importance = (_header(headers, "Importance") or "").strip().lower()
    priority = (_header(headers, "X-Priority") or "").strip()
    flags = flags_state(data.get(b"FLAGS", ()))
    return Envelope(
        uid=uid,
        date=date,
        subject=_header(headers, "Subject"),
        sender=sender[0] if sender else None,
        to=_addresses(_header(headers, "To")),
        cc=_addresses(_header(headers, "Cc")),
        message_id=_header(headers, "Message-ID"),
        size=int(data.get(b"RFC822.SIZE", 0) or 0),
        has_attachments=_has_attachments(data.get(b"BODYSTRUCTURE")),
        mdn_requested=_header(headers, "Disposition-Notification-To") is not None,
        urgent=importance == "high" or priority.startswith("1"),
        mss_headers=mss,
        modseq=data.get(b"MODSEQ", (None,))[0] if data.get(b"MODSEQ") else None,
        malformed=malformed or bad_date,
        **flags,
    )
