"""Opening a message and its attachments for a user who may see it.

The membership check comes first: a message of a mailbox the user is not a member of is
`not_found`, exactly like an id that does not exist, so ids cannot be probed (no 403).
Bodies come from the encrypted cache when it still has them, else from IMAP.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import errors
from backend.config import Settings
from backend.mail import xdm
from backend.mail.sessions import open_folder
from backend.reading import mime, server
from backend.reading.cache import BodyCache
from backend.storage.models import Folder, Mailbox, Membership, Message, User

_PART = re.compile(r"^(?P<section>[0-9.]{1,64})(?:/xdm/(?P<document>[1-9][0-9]{0,3}))?$")
_PUBLIC_ID = re.compile(r"^msg_[A-Za-z0-9_-]{1,27}$")
MAX_ARCHIVE_BYTES = 60 * 1024 * 1024
SPOOL_IN_MEMORY = 1024 * 1024


@dataclass(frozen=True)
class Located:
    """A message the caller may see, with where it lives."""

    message: Message
    mailbox: Mailbox
    folder: Folder
    role: str


def get_visible_message(*, db: Session, user: User, public_id: str) -> Located:
    """The message if the user is a member of its mailbox; otherwise `not_found`."""
    if not _PUBLIC_ID.match(public_id):  # not one of ours: no query (PostgreSQL refuses NUL)
        raise errors.NotFound("no such message")
    row = db.execute(
        select(Message, Mailbox, Folder, Membership.role)
        .join(Mailbox, Mailbox.id == Message.mailbox_id)
        .join(Folder, Folder.id == Message.folder_id)
        .join(Membership, Membership.mailbox_id == Mailbox.id)
        .where(Message.public_id == public_id, Membership.user_id == user.id)
    ).first()
    if row is None:
        raise errors.NotFound("no such message")
    return Located(*row)


def raw_message(located: Located, *, cache: BodyCache, settings: Settings) -> bytes:
    """The message's RFC 5322 bytes, from the cache or from IMAP (then cached)."""
    key = located.message.public_id
    raw = cache.get(key)
    if raw is None:
        with open_folder(
            located.mailbox, located.folder, settings=settings, readonly=True
        ) as client:
            raw = server.fetch_raw(client, located.message.uid)
        cache.put(key, raw)
    return raw


def read_message(located: Located, *, cache: BodyCache, settings: Settings) -> mime.ReadableMessage:
    return mime.read(raw_message(located, cache=cache, settings=settings))


@dataclass
class Download:
    content_type: str
    filename: str | None
    chunks: Iterable[bytes]


def _chunked(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def open_part(located: Located, part: str, *, cache: BodyCache, settings: Settings) -> Download:
    """An attachment (`2`, `1.3`) or a document inside an IHE_XDM.ZIP (`2/xdm/1`)."""
    match = _PART.match(part)
    if match is None or not server.valid_section(match["section"]):
        raise errors.NotFound("no such attachment")
    section, document = match["section"], match["document"]
    if document is not None:
        return _open_document(located, section, int(document), cache=cache, settings=settings)
    cached = cache.get(located.message.public_id)
    if cached is not None:
        leaf = mime.find_part(mime.parse_bytes(cached), section)
        if leaf is None:
            raise errors.NotFound("no such attachment")
        return Download(
            leaf.get_content_type(), mime.filename_of(leaf), _chunked(mime.part_bytes(leaf))
        )
    stream = server.stream_section(
        located.mailbox, located.folder, located.message, section, settings=settings
    )
    return Download(stream.content_type, stream.filename, stream.chunks)


def _open_document(
    located: Located, section: str, number: int, *, cache: BodyCache, settings: Settings
) -> Download:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        written = 0
        for chunk in open_part(located, section, cache=cache, settings=settings).chunks:
            written += len(chunk)
            if written > MAX_ARCHIVE_BYTES:
                raise errors.ArchiveRejected("the archive is too large to open here")
            spool.write(chunk)
        spool.seek(0)
        try:
            with xdm.open_archive(spool) as archive:
                package = xdm.read_package(archive)
                entry = next((d for d in package.documents if d.index == number), None)
                if entry is None:
                    raise errors.NotFound("no such document in the archive")
                document = _inflate(archive, entry.path)
        except xdm.ArchiveRejected as exc:
            raise errors.ArchiveRejected(str(exc)) from exc

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := document.read(64 * 1024):
                yield chunk
        finally:
            document.close()

    filename = entry.path.rsplit("/", 1)[-1]
    return Download(entry.content_type, filename, server.ClosingChunks(chunks(), document.close))


def _inflate(archive: zipfile.ZipFile, path: str) -> IO[bytes]:
    """The whole member, decompressed and checked before its first byte is sent.

    A member larger than it declares, or whose CRC fails, is refused here (422) rather
    than cutting a 200 response mid-stream.
    """
    document = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        for chunk in xdm.iter_member(archive, path):
            document.write(chunk)
    except BaseException:
        document.close()
        raise
    document.seek(0)
    return document
