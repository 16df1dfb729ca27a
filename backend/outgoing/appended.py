"""A message the gateway writes into one of the mailbox's own folders (Sent, Drafts).

APPEND first, so the desktop client sees it; then, with the APPENDUID the server
answers (UIDPLUS, RFC 4315), the envelope is cached at once, silently, so the phone lists
it without waiting for a sync. Without UIDPLUS the sync finds it at its next pass.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.mail.envelope import HEADER_KEY, parse_fetch
from backend.mail.imap import DRAFTS, SENT, MailSession
from backend.storage.models import Folder, Mailbox, Message, utcnow
from backend.store import cache as store

_ATTRIBUTE = {"sent": SENT, "drafts": DRAFTS}
DEFAULT_NAMES = {"sent": "Sent", "drafts": "Drafts"}
_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)", re.IGNORECASE)


def folder_for(client: MailSession, role: str) -> str:
    """The folder with this SPECIAL-USE attribute, else its usual name, created if need be."""
    name = client.find_special_folder(_ATTRIBUTE[role]) or DEFAULT_NAMES[role]
    if not client.folder_exists(name):
        client.create_folder(name)
    return name


def append_and_cache(
    db: Session,
    client: MailSession,
    mailbox: Mailbox,
    raw: bytes,
    *,
    role: str,
    flags: tuple[bytes, ...],
    has_attachments: bool,
) -> str | None:
    """APPEND `raw` to the role's folder, then cache it; its public id, or None when it is
    not cached yet (no APPENDUID, or the folder was recreated meanwhile: the sync will
    find it). Raises the session's errors: the caller decides."""
    now = utcnow()
    folder_name = folder_for(client, role)
    reply = client.append(folder_name, raw, flags=flags, msg_time=now)
    match = _APPENDUID.search(reply or b"")
    if match is None:
        return None
    uidvalidity, uid = int(match.group(1)), int(match.group(2))
    header_end = raw.find(b"\r\n\r\n")
    envelope = parse_fetch(
        uid,
        {
            HEADER_KEY: raw[: header_end + 4] if header_end >= 0 else raw,
            b"FLAGS": flags,
            b"RFC822.SIZE": len(raw),
            b"INTERNALDATE": now,
        },
    )
    envelope.has_attachments = has_attachments
    position = store.folder_position(db=db, mailbox_id=mailbox.id, name=folder_name, role=role)
    folder = db.get(Folder, position.folder_id)
    if folder.uidvalidity is None:
        folder.uidvalidity = uidvalidity
    elif folder.uidvalidity != uidvalidity:
        return None
    new_ids = store.store_new_messages(
        db=db, mailbox_id=mailbox.id, folder_id=folder.id, envelopes=[envelope], announce=False
    )
    db.commit()
    row_id = new_ids[0] if new_ids else None
    if row_id is None:
        row_id = db.scalar(
            select(Message.id).where(Message.folder_id == folder.id, Message.uid == uid)
        )
    return db.scalar(select(Message.public_id).where(Message.id == row_id))
