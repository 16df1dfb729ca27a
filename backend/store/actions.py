"""What a user does to a message from the phone: mark it read or flagged, file it, trash it.

The IMAP server is changed FIRST, then the cache, so the desktop client sees the same
state and a failure leaves the cache telling the truth. The cache change takes the next
change number (so GET /sync reports it), and a message that stops being unread writes a
`mail.read` outbox row in the same transaction: the user's other devices clear their
notification (clear-on-read).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import errors
from backend.config import Settings
from backend.mail.imap import DELETED, FLAGGED, SEEN, TRASH, MailSession
from backend.mail.sessions import open_folder
from backend.mailboxes import change_log
from backend.push import outbox
from backend.reading.messages import Located
from backend.storage.models import Folder, Message
from backend.store import cache as store
from backend.store.folders import is_watched

DEFAULT_TRASH = "Trash"


@dataclass(frozen=True)
class FlagChange:
    seen: bool | None = None
    flagged: bool | None = None


def _require_uid(client: MailSession, uid: int) -> None:
    if uid not in client.fetch([uid], ["FLAGS"]):
        raise errors.NotFound("this message is no longer on the server")


def set_flags(*, db: Session, located: Located, change: FlagChange, settings: Settings) -> bool:
    """Store \\Seen / \\Flagged on the server, then in the cache; True if anything changed."""
    message = located.message
    wanted = {SEEN: change.seen, FLAGGED: change.flagged}
    add = [flag for flag, value in wanted.items() if value is True]
    remove = [flag for flag, value in wanted.items() if value is False]
    if add or remove:
        with open_folder(
            located.mailbox, located.folder, settings=settings, readonly=False
        ) as client:
            _require_uid(client, message.uid)
            if add:
                client.add_flags([message.uid], add, silent=True)
            if remove:
                client.remove_flags([message.uid], remove, silent=True)
    before = (message.seen, message.flagged)
    if change.seen is not None:
        message.seen = change.seen
    if change.flagged is not None:
        message.flagged = change.flagged
    if (message.seen, message.flagged) == before:
        return False
    message.change_seq = change_log.next_change_seq(db, message.mailbox_id)
    if message.seen and not before[0]:
        outbox.announce_read(db, mailbox_id=message.mailbox_id, message_id=message.id)
    db.flush()
    return True


def trash_folder(client: MailSession) -> str:
    """The folder marked \\Trash (RFC 6154 SPECIAL-USE), else the usual name."""
    return client.find_special_folder(TRASH) or DEFAULT_TRASH


def expunge_uid(client: MailSession, uid: int) -> None:
    """\\Deleted, then UID EXPUNGE (RFC 4315) of that message alone, in the selected folder.

    Without UIDPLUS the message is only marked \\Deleted: a plain EXPUNGE would also
    remove messages someone else marked for deletion.
    """
    client.add_flags([uid], [DELETED], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge([uid])


def move_uid(client: MailSession, uid: int, target: str) -> None:
    """MOVE (RFC 6851) when offered, else COPY, then the original expunged (`expunge_uid`)."""
    if client.has_capability("MOVE"):
        client.move([uid], target)
        return
    client.copy([uid], target)
    expunge_uid(client, uid)


def move_to_trash(*, db: Session, located: Located, settings: Settings) -> None:
    """Move the message to the mailbox's Trash; in Trash already, delete it for good."""
    message = located.message
    with open_folder(located.mailbox, located.folder, settings=settings, readonly=False) as client:
        _require_uid(client, message.uid)
        trash = trash_folder(client)
        if located.folder.name == trash:
            expunge_uid(client, message.uid)
        else:
            move_uid(client, message.uid, trash)
    # Leaves a tombstone for /sync and, if it was unread, the clear-on-read push.
    store.remove_messages(db=db, message_ids=[message.id])


def move_message(*, db: Session, located: Located, target: Folder, settings: Settings) -> bool:
    """File the message into `target` (MOVE, or COPY + UID EXPUNGE), then the cache.

    Into a watched folder the cached envelope follows, with the UID the server gave it
    (found by its Message-ID), so the app keeps the same message in its new folder and
    no push rings for it. Into an unwatched one (Junk, Trash by default), or when the new
    UID cannot be known, it leaves the cache as an expunge does. Returns whether it is
    still in the cache.
    """
    message = located.message
    if target.id == located.folder.id:
        return True
    message_id = message.message_id_header
    new_uid: int | None = None
    with open_folder(located.mailbox, located.folder, settings=settings, readonly=False) as client:
        _require_uid(client, message.uid)
        move_uid(client, message.uid, target.name)
        if is_watched(target) and target.uidvalidity is not None and message_id:
            status = client.select_folder(target.name, readonly=True)
            if int(status[b"UIDVALIDITY"]) == target.uidvalidity:
                found = client.search(["HEADER", "Message-ID", message_id])
                new_uid = max(found) if found else None
    already = new_uid is not None and db.scalar(
        select(Message.id).where(Message.folder_id == target.id, Message.uid == new_uid)
    )
    if new_uid is None or already:  # the folder poll was quicker: that copy stays
        store.remove_messages(db=db, message_ids=[message.id])
        return False
    message.folder_id, message.uid = target.id, new_uid
    message.change_seq = change_log.next_change_seq(db, message.mailbox_id)
    db.flush()
    return True
