"""The change log behind GET /sync (JMAP `/changes` in spirit).

Each mailbox numbers its changes: a new, re-flagged or moved message takes the next number
in `Message.change_seq`; a removed one leaves a tombstone with its number. A client's state is
the last number it has seen per mailbox, so "what changed since" is an index range scan.
Tombstones are kept for a while; a state older than the purged ones cannot be answered.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, insert, select, update
from sqlalchemy.orm import Session

from backend import errors
from backend.mailboxes import listings  # the module: listings imports us back, via folders
from backend.storage.models import Folder, Mailbox, Message, MessageTombstone, utcnow

# A phone offline longer than this gets `cannot_calculate_changes` and starts afresh.
TOMBSTONE_RETENTION = timedelta(days=30)
# How long after leaving a folder a message arriving in another is taken for the same one
# moved: the other folders are polled (ESTAFETTE_FOLDER_POLL_SECONDS), so minutes at most.
MOVE_WINDOW = timedelta(hours=1)


def current_change_seq(db: Session, mailbox: Mailbox) -> int:
    """The last change number handed out in `mailbox` (0 before any)."""
    return max(
        mailbox.tombstones_purged_seq,
        db.scalar(select(func.max(Message.change_seq)).where(Message.mailbox_id == mailbox.id))
        or 0,
        db.scalar(
            select(func.max(MessageTombstone.change_seq)).where(
                MessageTombstone.mailbox_id == mailbox.id
            )
        )
        or 0,
    )


def change_heads(db: Session, mailboxes: list[Mailbox]) -> dict[int, int]:
    """`current_change_seq` of several mailboxes in one statement (two index probes each)."""
    if not mailboxes:
        return {}
    live = (
        select(func.max(Message.change_seq))
        .where(Message.mailbox_id == Mailbox.id)
        .correlate(Mailbox)
        .scalar_subquery()
    )
    dead = (
        select(func.max(MessageTombstone.change_seq))
        .where(MessageTombstone.mailbox_id == Mailbox.id)
        .correlate(Mailbox)
        .scalar_subquery()
    )
    rows = db.execute(
        select(Mailbox.id, Mailbox.tombstones_purged_seq, live, dead).where(
            Mailbox.id.in_([mailbox.id for mailbox in mailboxes])
        )
    ).all()
    return {row[0]: max(row[1] or 0, row[2] or 0, row[3] or 0) for row in rows}


def next_change_seq(db: Session, mailbox_id: int) -> int:
    """Hand out the mailbox's next change number: THE allocator every cache writer uses.

    Numbers only grow: a deleted message's number lives on in its tombstone, a purged
    tombstone's in `tombstones_purged_seq`. The mailbox row lock (PostgreSQL; SQLite has one
    writer at a time) is held to commit, so one mailbox's changes commit in number order
    and a reader never sees number n+1 before n. It writes nothing itself, so the caller's
    transaction takes SQLite's write lock only when it flushes.
    """
    mailbox = db.execute(
        select(Mailbox)
        .where(Mailbox.id == mailbox_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    return current_change_seq(db, mailbox) + 1


def _bury(db: Session, which: ColumnElement[bool]) -> int:
    """Leave a tombstone for each cached message matching `which`, before it is deleted."""
    rows = db.execute(
        select(Message.mailbox_id, Message.public_id, Message.message_id_digest).where(which)
    ).all()
    by_mailbox: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
    for mailbox_id, public_id, digest in rows:
        by_mailbox[mailbox_id].append((public_id, digest))
    for mailbox_id in sorted(by_mailbox):  # a fixed lock order: no deadlock between writers
        seq = next_change_seq(db, mailbox_id)
        db.execute(
            insert(MessageTombstone),
            [
                {
                    "mailbox_id": mailbox_id,
                    "public_id": public_id,
                    "change_seq": seq,
                    "message_id_digest": digest,
                }
                for public_id, digest in by_mailbox[mailbox_id]
            ],
        )
        purge_tombstones(db, older_than=utcnow() - TOMBSTONE_RETENTION, mailbox_id=mailbox_id)
    return len(rows)


def purge_tombstones(db: Session, *, older_than: datetime, mailbox_id: int | None = None) -> int:
    """Forget deletes older than the retention; states from before then become too old."""
    query = (
        select(MessageTombstone.mailbox_id, func.max(MessageTombstone.change_seq))
        .where(MessageTombstone.deleted_at < older_than)
        .group_by(MessageTombstone.mailbox_id)
    )
    if mailbox_id is not None:
        query = query.where(MessageTombstone.mailbox_id == mailbox_id)
    floors = db.execute(query).all()
    for mailbox_id, seq in floors:
        db.execute(
            update(Mailbox)
            .where(Mailbox.id == mailbox_id, Mailbox.tombstones_purged_seq < seq)
            .values(tombstones_purged_seq=seq)
            .execution_options(synchronize_session=False)
        )
        db.execute(
            delete(MessageTombstone).where(
                MessageTombstone.mailbox_id == mailbox_id, MessageTombstone.change_seq <= seq
            )
        )
    return len(floors)


@dataclass
class MailboxChanges:
    """What changed in one mailbox after `since`, up to and including `upto`."""

    mailbox: Mailbox
    upserts: list[tuple[Row[Any], str]] = field(default_factory=list)  # ENVELOPE_COLUMNS
    deleted: list[str] = field(default_factory=list)
    upto: int = 0
    complete: bool = True


def _change_numbers(db: Session, mailbox_id: int, since: int, budget: int) -> list[int]:
    """The first `budget + 1` change numbers after `since`, messages and tombstones merged."""
    live = db.scalars(
        select(Message.change_seq)
        .where(Message.mailbox_id == mailbox_id, Message.change_seq > since)
        .order_by(Message.change_seq)
        .limit(budget + 1)
    ).all()
    dead: list[int] = []
    if since > 0:  # a client starting from nothing has nothing to delete
        dead = db.scalars(
            select(MessageTombstone.change_seq)
            .where(MessageTombstone.mailbox_id == mailbox_id, MessageTombstone.change_seq > since)
            .order_by(MessageTombstone.change_seq)
            .limit(budget + 1)
        ).all()
    return sorted([*live, *dead])[: budget + 1]


def mailbox_changes(
    db: Session, mailbox: Mailbox, *, since: int, budget: int, head: int
) -> MailboxChanges:
    """Changes after `since`, about `budget` of them; never splits one change number.

    `head` is the mailbox's `current_change_seq`. Raises `CannotCalculateChanges` when the
    deletes since then were already purged, or the state is from ahead of this database.
    """
    if 0 < since < mailbox.tombstones_purged_seq or since > head:
        raise errors.CannotCalculateChanges(
            "This state cannot be brought up to date; start again without `since`."
        )
    result = MailboxChanges(mailbox=mailbox, upto=since)
    if since == head:  # the usual poll: nothing new, and no query to find that out
        return result
    numbers = _change_numbers(db, mailbox.id, since, budget)
    if not numbers:
        return result
    if len(numbers) <= budget:
        upto = numbers[-1]
    else:
        result.complete = False
        # Stop before the first number that does not fit, but always make progress.
        upto = max(numbers[budget] - 1, numbers[0])
    # Plain columns and the folder's name in the same statement: no ORM objects, and
    # no round trip of its own for the folders.
    for row in db.execute(
        select(*listings.ENVELOPE_COLUMNS, func.coalesce(Folder.name, "INBOX").label("folder"))
        .outerjoin(Folder, Folder.id == Message.folder_id)
        .where(
            Message.mailbox_id == mailbox.id,
            Message.change_seq > since,
            Message.change_seq <= upto,
        )
        .order_by(Message.change_seq, Message.id)
    ):
        result.upserts.append((row, row.folder))
    if since > 0:
        result.deleted = list(
            db.scalars(
                select(MessageTombstone.public_id)
                .where(
                    MessageTombstone.mailbox_id == mailbox.id,
                    MessageTombstone.change_seq > since,
                    MessageTombstone.change_seq <= upto,
                )
                .order_by(MessageTombstone.change_seq, MessageTombstone.id)
            )
        )
    result.upto = upto
    return result


def forget(db: Session, which: ColumnElement[bool]) -> int:
    """Delete the cached messages matching `which`, each leaving its tombstone first."""
    buried = _bury(db, which)
    db.execute(delete(Message).where(which))
    return buried


def moved_here(db: Session, mailbox_id: int, digest: str | None) -> str | None:
    """A message arriving in a folder that left another folder of the mailbox a moment
    ago (same Message-ID, its tombstone within `MOVE_WINDOW`) is a move, not new mail:
    its public id is returned, and the tombstone taken back, so the app sees the same
    message with its new folder."""
    if digest is None:
        return None
    tombstone = db.scalar(
        select(MessageTombstone)
        .where(
            MessageTombstone.mailbox_id == mailbox_id,
            MessageTombstone.message_id_digest == digest,
            MessageTombstone.deleted_at >= utcnow() - MOVE_WINDOW,
        )
        .order_by(MessageTombstone.id.desc())
        .limit(1)
    )
    if tombstone is None:
        return None
    public_id = tombstone.public_id
    db.delete(tombstone)
    return public_id
