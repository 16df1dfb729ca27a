"""Reading the envelope cache: listings and counts, keyset-paginated, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from backend.storage.models import Folder, Mailbox, Message

XDM_SUBJECT_PREFIX = "XDM/1.0/DDM+"


def display_subject(subject: str | None) -> str | None:
    """MSSanté: the `XDM/1.0/DDM+` prefix is a transport marker, hidden from readers."""
    if subject and subject.startswith(XDM_SUBJECT_PREFIX):
        return subject[len(XDM_SUBJECT_PREFIX) :].lstrip()
    return subject


def envelope(message: Message, mailbox: Mailbox, folder_name: str) -> dict[str, Any]:
    recipients = message.recipients or {}
    return {
        "id": message.public_id,
        "mailbox_id": mailbox.public_id,
        "folder": folder_name,
        "subject": display_subject(message.subject),
        "from_": message.sender,
        "to": recipients.get("to", []),
        "cc": recipients.get("cc", []),
        "date": message.sort_key,
        "seen": message.seen,
        "flagged": message.flagged,
        "answered": message.answered,
        "has_attachments": message.has_attachments,
        "size": message.size,
        "mdn_requested": message.mdn_requested,
        "malformed": message.malformed,
        "patient": message.patient,
    }


def counts(*, db: Session, mailbox: Mailbox, folder_name: str = "INBOX") -> tuple[int, int]:
    """(unread, total) in one folder."""
    row = db.execute(
        select(
            func.count(Message.id),
            func.count(Message.id).filter(Message.seen.is_(False)),
        )
        .join(Folder, Folder.id == Message.folder_id)
        .where(Message.mailbox_id == mailbox.id, Folder.name == folder_name)
    ).one()
    return int(row[1]), int(row[0])


def list_page(
    *,
    db: Session,
    mailbox: Mailbox,
    folder_name: str,
    limit: int,
    after: tuple[datetime, int] | None,
) -> tuple[list[Message], tuple[datetime, int] | None]:
    """One page newest first, and the key to continue from (None at the end)."""
    folder_id = db.scalar(
        select(Folder.id).where(Folder.mailbox_id == mailbox.id, Folder.name == folder_name)
    )
    if folder_id is None:
        return [], None
    query = select(Message).where(Message.mailbox_id == mailbox.id, Message.folder_id == folder_id)
    if after is not None:
        key, last_id = after
        query = query.where(
            or_(Message.sort_key < key, and_(Message.sort_key == key, Message.id < last_id))
        )
    rows = list(
        db.scalars(query.order_by(Message.sort_key.desc(), Message.id.desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1].sort_key, rows[-1].id) if more else None)
