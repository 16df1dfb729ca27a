"""A mailbox's folders in the cache: what the server lists, their counts, which are watched.

The server is the truth (DESIGN.md): a folder created on the desktop appears at the next
poll, one deleted disappears with its messages (each reported deleted to `GET /sync`), and
a renamed one is the old one gone and the new one imported, silently, as a first sync is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from backend.mailboxes import change_log
from backend.storage.models import Folder, Message

ROLES = ("inbox", "sent", "drafts", "trash", "junk", "archive")
UNWATCHED_BY_DEFAULT = frozenset({"junk", "trash"})
# A folder's import baseline before its first sync when it appeared after the mailbox's
# first folder poll: everything in it came since, and is announced (backend/sync/catch_up).
BORN_NEW = 0


@dataclass(frozen=True)
class RemoteFolder:
    """One folder as LIST and STATUS describe it."""

    name: str
    role: str | None
    messages: int | None = None
    unseen: int | None = None
    uidnext: int | None = None
    uidvalidity: int | None = None
    highest_modseq: int | None = None


def is_watched(folder: Folder) -> bool:
    """The admin's choice, else every folder but Junk and Trash."""
    if folder.watched is not None:
        return folder.watched
    return folder.role not in UNWATCHED_BY_DEFAULT


def record_folders(*, db: Session, mailbox_id: int, remote: list[RemoteFolder]) -> list[str]:
    """Bring the folder rows level with the server's list; return the watched folders
    (INBOX aside: IDLE watches it) whose STATUS says they changed since our position."""
    known = {f.name: f for f in db.scalars(select(Folder).where(Folder.mailbox_id == mailbox_id))}
    listed = {folder.name for folder in remote}
    gone = [folder.id for name, folder in known.items() if name not in listed]
    if gone:
        change_log.forget(db, Message.folder_id.in_(gone))
        db.execute(delete(Folder).where(Folder.id.in_(gone)))
    # Polled before (some folder holds a STATUS): a folder new now was made since, by the
    # desktop or by a rule filing mail into it; its mail is new mail, and rings.
    polled_before = any(f.messages is not None for f in known.values())
    changed: list[str] = []
    for status in remote:
        folder = known.get(status.name)
        if folder is None:
            folder = Folder(mailbox_id=mailbox_id, name=status.name, last_uid=0)
            if polled_before:
                folder.import_baseline_uid = BORN_NEW
            db.add(folder)
        folder.role = status.role
        folder.messages, folder.unseen = status.messages, status.unseen
        if status.role == "inbox" or not is_watched(folder):
            continue
        if _empty_at_first_sight(folder, status):
            # Nothing to import: its position is its STATUS, and no SELECT is needed.
            born_new = folder.import_baseline_uid == BORN_NEW
            folder.uidvalidity, folder.highest_modseq = status.uidvalidity, status.highest_modseq
            folder.last_uid = status.uidnext - 1
            folder.import_baseline_uid = BORN_NEW if born_new else status.uidnext
        elif _changed(folder, status):
            changed.append(status.name)
    db.flush()
    return changed


def _empty_at_first_sight(folder: Folder, status: RemoteFolder) -> bool:
    return (
        folder.uidvalidity is None
        and status.messages == 0
        and status.uidvalidity is not None
        and status.uidnext is not None
    )


def _changed(folder: Folder, status: RemoteFolder) -> bool:
    if folder.uidvalidity is None or status.uidvalidity != folder.uidvalidity:
        return True
    if status.uidnext is None or status.uidnext > folder.last_uid + 1:
        return True
    if status.highest_modseq is None:  # no CONDSTORE: flags may have moved unseen
        return True
    return status.highest_modseq != folder.highest_modseq


def set_watched(*, db: Session, folder: Folder, watched: bool | None) -> None:
    """Watch a folder or stop (None: back to the default). A folder no longer watched
    leaves the phone (its messages reported deleted) and starts afresh, silently, if it
    is watched again: nothing in it rings."""
    was = is_watched(folder)
    folder.watched = watched
    if was and not is_watched(folder):
        change_log.forget(db, Message.folder_id == folder.id)
        db.execute(
            update(Folder)
            .where(Folder.id == folder.id)
            .values(uidvalidity=None, last_uid=0, highest_modseq=None, import_baseline_uid=None)
        )
    db.flush()
