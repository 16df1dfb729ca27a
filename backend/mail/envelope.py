"""Turn what IMAP FETCH returns into the envelope we cache, in bounded time and memory.

A header that does not parse never drops the message: the envelope is kept with
`malformed` set, and the raw message stays readable on the server.

Bounded per message: the server sends at most HEADER_LIMIT bytes of the header block (a
partial FETCH, RFC 3501 §6.4.5), each field is cut to FIELD_LIMIT characters before it is
decoded, and at most MAX_RECIPIENTS addresses are kept per list. The block is split with
the `compat32` policy, which keeps values as text: the modern policy's structured parsers
are quadratic on hostile address fields. Encoded words (RFC 2047) are decoded by
`email.header` and addresses split by `email.utils.getaddresses`, both linear.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from backend.metrics import SYNC_TRUNCATED_HEADERS

log = logging.getLogger("estafette.sync")

# A real header block is a few KB; 20,000 recipients or a 1 MB subject is not worth more.
HEADER_LIMIT = 64 * 1024
FIELD_LIMIT = 16 * 1024  # characters of one field decoded (RFC 5322 folds; this is plenty)
MAX_RECIPIENTS = 100  # per list (To, Cc); the full list stays readable on the server
MAX_MSS_HEADERS = 32

# What we ask the server for each new message: headers only, the body stays on IMAP.
FETCH_ITEMS = [
    "UID",
    "FLAGS",
    "RFC822.SIZE",
    "INTERNALDATE",
    "BODYSTRUCTURE",
    f"BODY.PEEK[HEADER]<0.{HEADER_LIMIT}>",
]
# Without the header: what is left to fetch of a message whose answer could not be read.
BASIC_FETCH_ITEMS = ["UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE"]
HEADER_KEY = b"BODY[HEADER]"
_PARTIAL_HEADER_KEY = b"BODY[HEADER]<0>"  # how the server names a partial answer

_parser = BytesHeaderParser(policy=policy.compat32)


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


def header_bytes(data: dict[bytes, Any]) -> bytes:
    """The header block of one FETCH answer, whole or partial (`BODY[HEADER]<0>`)."""
    raw = data.get(HEADER_KEY)
    if raw is None:
        raw = data.get(_PARTIAL_HEADER_KEY)
    return bytes(raw or b"")


def field_text(value: Any, *, decode_words: bool = True) -> str:
    """One raw header value as text: unfolded, 8-bit read as UTF-8, encoded words decoded.

    Takes what `compat32` gives (text with surrogate escapes, or a `Header`); never raises.
    NULs go: they end C strings and mean nothing in a header (RFC 5322 §3.2.3).
    """
    text = value if isinstance(value, str) else str(value)
    text = text[:FIELD_LIMIT].replace("\r", "").replace("\n", "").replace("\x00", "")
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if decode_words and "=?" in text:
        # An undecodable encoded word stays as it came.
        with contextlib.suppress(HeaderParseError, LookupError, UnicodeError, ValueError):
            text = str(make_header(decode_header(text)))
    return text


def _fields(raw_headers: bytes) -> tuple[dict[str, list[str]], bool]:
    """Header fields by lower-case name, raw values; and whether the block has defects."""
    message = _parser.parsebytes(raw_headers)
    fields: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        fields.setdefault(str(name).strip().lower(), []).append(value)
    return fields, bool(message.defects)


def _first(fields: dict[str, list[str]], name: str, *, decode_words: bool = True) -> str | None:
    values = fields.get(name)
    return field_text(values[0], decode_words=decode_words) if values else None


def _addresses(raw: str | None) -> list[dict[str, str | None]]:
    """At most MAX_RECIPIENTS addresses of a field's text with its encoded words still in:
    names are decoded after splitting (a decoded name may hold a ",")."""
    if not raw:
        return []
    result: list[dict[str, str | None]] = []
    for name, addr in getaddresses([raw]):
        if not (name or addr):
            continue
        result.append(
            {"name": field_text(name) or None, "address": field_text(addr).strip() or None}
        )
        if len(result) >= MAX_RECIPIENTS:
            break
    return result


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
    except (AttributeError, IndexError, TypeError, RecursionError):
        return False


def _internal_date(internal: Any) -> datetime:
    fallback = internal if isinstance(internal, datetime) else datetime.now(UTC)
    if fallback.tzinfo is None:
        fallback = fallback.replace(tzinfo=UTC)
    return fallback.astimezone(UTC)


def _date(raw: str | None, internal: Any) -> tuple[datetime, bool]:
    try:
        parsed = parsedate_to_datetime(raw[:200]) if raw else None
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed is None:
        return _internal_date(internal), raw is not None
    return parsed.astimezone(UTC), False


def _modseq(data: dict[bytes, Any]) -> int | None:
    value = data.get(b"MODSEQ")
    return int(value[0]) if value else None


def parse_fetch(uid: int, data: dict[bytes, Any]) -> Envelope:
    """Build an Envelope from one FETCH response; never raises on bad headers."""
    raw_headers = header_bytes(data)
    truncated = len(raw_headers) >= HEADER_LIMIT
    if truncated:
        # The last field is kept cut short (the first recipients of a huge list), and ends
        # the block: the envelope is marked malformed, so the apps know it is incomplete.
        raw_headers = raw_headers.rstrip(b"\r\n") + b"\r\n\r\n"
        log.warning("uid %s: header block over %d bytes, truncated", uid, HEADER_LIMIT)
        SYNC_TRUNCATED_HEADERS.inc()
    fields, malformed = _fields(raw_headers)
    date, bad_date = _date(_first(fields, "date"), data.get(b"INTERNALDATE"))
    sender = _addresses(_first(fields, "from", decode_words=False))
    mss = {
        name: field_text(values[0])[:1000]
        for name, values in list(fields.items())
        if name.startswith("x-mss-")
    }
    mss = dict(list(mss.items())[:MAX_MSS_HEADERS])
    subject = _first(fields, "subject")
    message_id = _first(fields, "message-id")
    return Envelope(
        uid=uid,
        date=date,
        subject=subject[:2000] if subject is not None else None,
        sender=sender[0] if sender else None,
        to=_addresses(_first(fields, "to", decode_words=False)),
        cc=_addresses(_first(fields, "cc", decode_words=False)),
        message_id=message_id[:998] if message_id is not None else None,
        size=int(data.get(b"RFC822.SIZE", 0) or 0),
        has_attachments=_has_attachments(data.get(b"BODYSTRUCTURE")),
        mdn_requested="disposition-notification-to" in fields,
        urgent=is_urgent(fields),
        mss_headers=mss,
        modseq=_modseq(data),
        malformed=malformed or bad_date or truncated,
        **flags_state(data.get(b"FLAGS", ())),
    )


def is_urgent(fields: dict[str, list[str]]) -> bool:
    """What senders' clients write for "urgent": Outlook's `Importance: high`, the older
    `X-Priority: 1` (highest) or `2` (high), and X.400's `Priority: urgent` (RFC 2156)."""
    importance = (_first(fields, "importance") or "").strip().lower()
    x_priority = (_first(fields, "x-priority") or "").strip()
    priority = (_first(fields, "priority") or "").strip().lower()
    return importance == "high" or x_priority[:1] in ("1", "2") or priority == "urgent"


def unreadable_envelope(uid: int, data: dict[bytes, Any]) -> Envelope:
    """What we keep of a message that could not be processed: flags, size, date; malformed.

    The apps list it and open it raw (the body is read from the server), so one hostile
    message never hides the mailbox's other mail.
    """
    try:
        flags = flags_state(data.get(b"FLAGS", ()))
        size = int(data.get(b"RFC822.SIZE", 0) or 0)
        date = _internal_date(data.get(b"INTERNALDATE"))
    except (TypeError, ValueError, AttributeError, OverflowError):
        flags, size, date = flags_state(()), 0, datetime.now(UTC)
    return Envelope(
        uid=uid,
        date=date,
        subject=None,
        sender=None,
        to=[],
        cc=[],
        message_id=None,
        size=size,
        has_attachments=False,
        mdn_requested=False,
        urgent=False,
        modseq=None,
        malformed=True,
        **flags,
    )
