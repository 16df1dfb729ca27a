"""What a reader sees of one message: text, safe HTML, MSSanté headers, attachments.

Parsed with the standard library's modern API (`email.policy.default`). Mail as servers
really deliver it is often broken: unknown charsets, truncated base64, missing
boundaries. None of that loses the message. Text is decoded with replacement characters
and a warning, and a message the parser cannot make sense of is shown as raw text with
the `malformed` warning.

Parts are numbered as IMAP numbers them (RFC 3501 §6.4.5 section specs: "1", "2.1"...),
so an attachment can be fetched on its own with `BODY.PEEK[<part>]`.
"""

from __future__ import annotations

import codecs
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from backend.mail import xdm
from backend.reading.filenames import clean_filename
from backend.reading.sanitize import html_to_text, is_renderable, sanitize_html, stripped_text

# Characters of one header field shown as is; the envelope's own limit (mail/envelope.py).
FIELD_LIMIT = 16 * 1024

log = logging.getLogger("estafette.reading")

_parser = BytesParser(policy=policy.default)
# A body larger than this is cut for display; the whole stays on IMAP.
MAX_TEXT_CHARS = 2_000_000


@dataclass
class Attachment:
    part: str
    filename: str | None
    content_type: str
    size: int
    documents: list[xdm.XdmDocument] | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReadableMessage:
    text: str | None
    html: str | None
    headers: dict[str, str]
    attachments: list[Attachment]
    warnings: list[str]
    patient: xdm.Patient | None = None


def clean_text(value: str) -> str:
    """Undo surrogate escapes the parser uses for raw 8-bit bytes, so JSON stays valid."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_bytes(raw: bytes) -> EmailMessage:
    return _parser.parsebytes(raw)


def iter_leaves(message: EmailMessage) -> Iterator[tuple[str, EmailMessage]]:
    """Every non-multipart part with its IMAP section number, depth first."""

    def walk(part: EmailMessage, section: str) -> Iterator[tuple[str, EmailMessage]]:
        # A forwarded message (message/rfc822) is one attachment: IMAP's BODY[n] of it is
        # the whole encapsulated message.
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            for number, child in enumerate(part.iter_parts(), start=1):
                yield from walk(child, f"{section}.{number}" if section else str(number))
        else:
            yield (section or "1"), part

    yield from walk(message, "")


def find_part(message: EmailMessage, section: str) -> EmailMessage | None:
    for number, part in iter_leaves(message):
        if number == section:
            return part
    return None


def part_bytes(part: EmailMessage) -> bytes:
    """A leaf's content with its transfer encoding undone (a whole message for rfc822)."""
    if part.get_content_type() == "message/rfc822" and part.is_multipart():
        return part.get_payload(0).as_bytes(policy=policy.SMTP)
    return part.get_payload(decode=True) or b""


def decode_text(part: EmailMessage, warnings: set[str]) -> str:
    """A text part as str, whatever its charset claims; problems become warnings."""
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "us-ascii"
    try:
        codecs.lookup(charset)
    except LookupError:
        warnings.add("unknown_charset")
        charset = "utf-8"
    try:
        return payload.decode(charset)
    except UnicodeDecodeError:
        pass
    if charset.lower().replace("_", "-") in {"us-ascii", "ascii", "utf-8", "utf8"}:
        # Undeclared 8-bit text from French mailers is nearly always Windows-1252.
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = payload.decode("cp1252", "replace")
        warnings.add("charset_mismatch")
        return text
    warnings.add("undecodable_text")
    return payload.decode(charset, "replace")


def filename_of(part: EmailMessage) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, TypeError, IndexError):
        name = None
    return clean_filename(clean_text(name)) if name else None


def _is_attachment(part: EmailMessage, bodies: tuple[Any, ...]) -> bool:
    if any(part is body for body in bodies):
        return False
    if part.get_content_disposition() == "attachment" or filename_of(part):
        return True
    return part.get_content_maintype() != "text"


def _xdm_documents(part: EmailMessage, attachment: Attachment) -> xdm.Patient | None:
    payload = part.get_payload(decode=True) or b""
    package, reason = xdm.describe(io.BytesIO(payload))
    if package is None:
        attachment.warnings.append("archive_rejected")
        log.info("IHE XDM archive refused in part %s: %s", attachment.part, reason)
        return None
    attachment.documents = package.documents
    return next((d.patient for d in package.documents if d.patient), None)


def read(raw: bytes) -> ReadableMessage:
    """Everything GET /messages/{id} shows; never raises on bad mail."""
    try:
        return _read(raw)
    except Exception as exc:  # the parser is lenient; this is the last line of defence
        # The exception's text may quote the message: log its type only.
        log.warning("message could not be parsed (%s); shown raw", type(exc).__name__)
        return ReadableMessage(
            text=raw[:MAX_TEXT_CHARS].decode("utf-8", "replace"),
            html=None,
            headers={},
            attachments=[],
            warnings=["malformed"],
        )


def _read(raw: bytes) -> ReadableMessage:
    message = parse_bytes(raw)
    warnings: set[str] = set()
    headers = {}
    # Only the X-MSS fields are parsed here (the envelope cache has the others): parsing
    # every field would let a 1 MB Subject or a 20,000-address To cost minutes and gigabytes.
    # raw_items() is the stdlib's own unparsed view (the generator's): sizes are checked
    # before any parsing.
    for name, raw_value in message.raw_items():
        if not name.lower().startswith("x-mss-"):
            continue
        if len(raw_value) > FIELD_LIMIT:
            headers[name.lower()] = clean_text(str(raw_value)[:FIELD_LIMIT])
            warnings.add("header_truncated")
            continue
        try:
            value = message.policy.header_fetch_parse(name, raw_value)
            headers[name.lower()] = clean_text(str(value))
        except (ValueError, TypeError, IndexError):
            warnings.add("malformed")

    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    bodies = tuple(b for b in (plain, rich) if b is not None)
    text_parts: list[str] = []
    html = source_html = None
    attachments: list[Attachment] = []
    patient = None
    for section, part in iter_leaves(message):
        if part.defects:
            warnings.add("malformed")
        if part.get_content_maintype() == "multipart":
            # Declared multipart but unsplittable (no boundary): show what is there as text.
            warnings.add("malformed")
            text_parts.append(clean_text(str(part.get_payload())))
        elif _is_attachment(part, bodies):
            payload = part_bytes(part)
            attachment = Attachment(
                part=section,
                filename=filename_of(part),
                content_type=part.get_content_type(),
                size=len(payload),
            )
            if xdm.looks_like_xdm(attachment.filename, attachment.content_type):
                patient = _xdm_documents(part, attachment) or patient
            attachments.append(attachment)
        elif part is rich:
            source = decode_text(part, warnings)
            if is_renderable(source):
                source_html, html = source, sanitize_html(source)
            else:  # too deep or too large to sanitise in bounded time: its text only
                warnings.add("html_not_rendered")
                if plain is None:
                    text_parts.append(stripped_text(source))
        elif part.get_content_type() == "text/html":
            continue  # another alternative of the HTML body
        elif part is plain or not any(part is b for b in bodies):
            text_parts.append(decode_text(part, warnings))
    if message.defects:
        warnings.add("malformed")
    text = "\n\n".join(text_parts) if text_parts else None
    if text is None and source_html is not None:
        text = html_to_text(source_html)
    if text is not None and len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        warnings.add("truncated")
    return ReadableMessage(
        text=text,
        html=html,
        headers=headers,
        attachments=attachments,
        warnings=sorted(warnings),
        patient=patient,
    )
