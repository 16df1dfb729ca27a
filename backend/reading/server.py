"""Reading one message or one part from the operator's IMAP server, on demand.

Everything goes through `backend.mail.imap.connect` (the one IMAP factory) and uses
`BODY.PEEK[...]` (RFC 3501 §6.4.5), so reading never sets `\\Seen` by itself: only an
explicit PATCH does. Server failures become `MailboxUnavailable` (503), and a message
that is no longer where the cache says (expunged, UIDVALIDITY changed) is `NotFound`.
"""

from __future__ import annotations

import binascii
import contextlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from backend import errors
from backend.config import Settings
from backend.mail.imap import MailSession
from backend.mail.sessions import open_folder
from backend.storage.models import Folder, Mailbox, Message

# Partial fetches (RFC 3501 `BODY[<section>]<origin.octets>`): an attachment crosses
# the gateway a chunk at a time. A multiple of 4 keeps base64 chunks aligned more often.
CHUNK_OCTETS = 256 * 1024
_SECTION = re.compile(r"^[1-9][0-9]{0,3}(\.[1-9][0-9]{0,3}){0,9}$")

_header_parser = BytesHeaderParser(policy=policy.default)


def valid_section(section: str) -> bool:
    return bool(_SECTION.match(section))


def _only_value(response: dict, uid: int, prefix: bytes) -> bytes | None:
    data = response.get(uid)
    if not data:
        return None
    for key, value in data.items():
        if isinstance(key, bytes) and key.startswith(prefix):
            return value if value is not None else b""
    return None


def fetch_raw(client: MailSession, uid: int) -> bytes:
    """The whole message, without marking it seen."""
    raw = _only_value(client.fetch([uid], ["BODY.PEEK[]"]), uid, b"BODY[")
    if raw is None:
        raise errors.NotFound("this message is no longer on the server")
    return raw


def fetch_section(client: MailSession, uid: int, section: str) -> bytes:
    """One part's body as transferred (still base64 or quoted-printable)."""
    raw = _only_value(client.fetch([uid], [f"BODY.PEEK[{section}]"]), uid, b"BODY[")
    if raw is None:
        raise errors.NotFound("this message is no longer on the server")
    return raw


def _part_exists(client: MailSession, uid: int, section: str) -> bool:
    """Is `section` a leaf of the message's BODYSTRUCTURE? (Servers answer empty, not NO,
    for a part that does not exist.)"""
    data = client.fetch([uid], ["BODYSTRUCTURE"]).get(uid)
    if not data or b"BODYSTRUCTURE" not in data:
        raise errors.NotFound("this message is no longer on the server")
    node = data[b"BODYSTRUCTURE"]
    numbers = [int(n) for n in section.split(".")]
    for depth, number in enumerate(numbers):
        if node.is_multipart:
            parts = node[0]
            if number > len(parts):
                return False
            node = parts[number - 1]
        elif not (depth == 0 and number == 1 and len(numbers) == 1):
            return False  # we do not descend into a forwarded message/rfc822
    return not node.is_multipart


def _part_headers(client: MailSession, uid: int, section: str) -> EmailMessage:
    """The MIME header of an existing leaf; `1` of a single-part message is the message's."""
    if not _part_exists(client, uid, section):
        raise errors.NotFound("no such attachment")
    raw = _only_value(client.fetch([uid], [f"BODY.PEEK[{section}.MIME]"]), uid, b"BODY[")
    if not raw or not raw.strip():
        raw = _only_value(client.fetch([uid], ["BODY.PEEK[HEADER]"]), uid, b"BODY[") or b""
    return _header_parser.parsebytes(raw)


class TransferDecoder:
    """Incremental Content-Transfer-Encoding decoding, chunk boundaries anywhere."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding.lower()
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if self.encoding == "base64":
            data = self._pending + re.sub(rb"[^A-Za-z0-9+/=]", b"", chunk)
            cut = len(data) - len(data) % 4
            self._pending = data[cut:]
            return self._b64(data[:cut])
        if self.encoding == "quoted-printable":
            data = self._pending + chunk
            cut = data.rfind(b"\n") + 1
            self._pending = data[cut:]
            return binascii.a2b_qp(data[:cut])
        return chunk

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        if self.encoding == "base64" and rest:
            rest = rest.rstrip(b"=")
            if len(rest) % 4 == 1:  # a truncated transfer: the last sextet is meaningless
                rest = rest[:-1]
            return self._b64(rest + b"=" * (-len(rest) % 4)) if rest else b""
        if self.encoding == "quoted-printable":
            return binascii.a2b_qp(rest)
        return rest

    @staticmethod
    def _b64(data: bytes) -> bytes:
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            # Padding in the middle of the stream (concatenated encoders): decode per block.
            return b"".join(_decode_block(data[i : i + 4]) for i in range(0, len(data), 4))


def _decode_block(block: bytes) -> bytes:
    try:
        return binascii.a2b_base64(block)
    except binascii.Error:
        return b""


class ClosingChunks:
    """Chunks with a `close()` that releases the source even if iteration never started.

    WSGI servers call `close()` on the response iterable when the client goes away; a bare
    generator that was never started would not run its `finally` and would hold the IMAP
    connection until garbage collection.
    """

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release = release

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        try:
            self._chunks.close()  # type: ignore[attr-defined]
        finally:
            self._release()


@dataclass
class PartStream:
    """A part's type, file name and decoded bytes, the first chunk already fetched."""

    content_type: str
    filename: str | None
    chunks: Iterable[bytes]


def stream_section(
    mailbox: Mailbox, folder: Folder, message: Message, section: str, *, settings: Settings
) -> PartStream:
    """Open the server, read the part's MIME header and first chunk now (so a dead server
    is a 503, not a cut stream), and hand back a generator for the rest."""
    stack = contextlib.ExitStack()
    client = stack.enter_context(open_folder(mailbox, folder, settings=settings, readonly=True))
    try:
        headers = _part_headers(client, message.uid, section)
        if headers.get_content_maintype() == "multipart":
            raise errors.NotFound("no such attachment")
        decoder = TransferDecoder(str(headers.get("Content-Transfer-Encoding", "7bit")).strip())
        first = _chunk(client, message.uid, section, 0)
    except BaseException:
        stack.close()
        raise

    def chunks() -> Iterator[bytes]:
        with stack:
            data, offset = first, 0
            while True:
                decoded = decoder.feed(data)
                if decoded:
                    yield decoded
                if len(data) < CHUNK_OCTETS:
                    break
                offset += len(data)
                data = _chunk(client, message.uid, section, offset)
            tail = decoder.finish()
            if tail:
                yield tail

    try:
        filename = headers.get_filename()
    except (ValueError, TypeError, IndexError):
        filename = None
    return PartStream(headers.get_content_type(), filename, ClosingChunks(chunks(), stack.close))


def _chunk(client: MailSession, uid: int, section: str, offset: int) -> bytes:
    item = f"BODY.PEEK[{section}]<{offset}.{CHUNK_OCTETS}>"
    data = _only_value(client.fetch([uid], [item]), uid, b"BODY[")
    if data is None:
        raise errors.NotFound("this message is no longer on the server")
    return data
