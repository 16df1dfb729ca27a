"""Every watched folder, not only INBOX: listed, polled, and caught up when it changed.

Secretariats and many doctors file mail with server-side rules (Sieve): a lab result filed
into "Résultats" must ring the phone as if it had stayed in INBOX. INBOX keeps its IDLE;
the other folders are listed on the same connection when NOTIFY (RFC 5465) says one
changed, or every `ESTAFETTE_FOLDER_POLL_SECONDS` on a server without it. A listing is one
LIST-STATUS command (RFC 5819), or LIST and one STATUS per folder: roles from RFC 6154
SPECIAL-USE attributes, and UIDNEXT, UIDVALIDITY and, with CONDSTORE, HIGHESTMODSEQ (RFC
7162 §3.1.2). Only a folder whose status moved is selected and caught up, with the same
QRESYNC/CONDSTORE code as INBOX, so a quiet mailbox costs one small command a period and
no SELECT.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from backend.mail.imap import MailSession
from backend.mail.watching import ListedFolder, list_with_status
from backend.storage.database import session_scope
from backend.store.folders import RemoteFolder, record_folders
from backend.sync.catch_up import catch_up

# RFC 6154 attributes, and RFC 5258's for folders that cannot be selected.
ROLE_BY_ATTRIBUTE = {
    b"\\SENT": "sent",
    b"\\DRAFTS": "drafts",
    b"\\TRASH": "trash",
    b"\\JUNK": "junk",
    b"\\ARCHIVE": "archive",
}
NOT_SELECTABLE = {b"\\NOSELECT", b"\\NONEXISTENT"}


def list_folders(client: MailSession, *, condstore: bool) -> list[RemoteFolder]:
    """The selectable folders with their roles and status; INBOX's counts come from IDLE.

    One LIST-STATUS command where the server offers it (RFC 5819), else LIST and one
    STATUS per folder.
    """
    items = [b"MESSAGES", b"UNSEEN", b"UIDNEXT", b"UIDVALIDITY"]
    if condstore:
        items.append(b"HIGHESTMODSEQ")
    listed = list_with_status(client, items)
    if listed is None:
        listed = [
            ListedFolder(str(name), frozenset(bytes(a).upper() for a in attributes), {})
            for attributes, _delimiter, name in client.list_folders()
        ]
    found: list[RemoteFolder] = []
    for folder in listed:
        if folder.attributes & NOT_SELECTABLE:
            continue
        if folder.name.upper() == "INBOX":
            # STATUS on the selected folder is discouraged (RFC 3501 §6.3.10).
            found.append(RemoteFolder("INBOX", "inbox"))
            continue
        role = next((r for a, r in ROLE_BY_ATTRIBUTE.items() if a in folder.attributes), None)
        status = folder.status or client.folder_status(folder.name, items)
        found.append(
            RemoteFolder(
                folder.name,
                role,
                messages=_int(status.get(b"MESSAGES")),
                unseen=_int(status.get(b"UNSEEN")),
                uidnext=_int(status.get(b"UIDNEXT")),
                uidvalidity=_int(status.get(b"UIDVALIDITY")),
                highest_modseq=_int(status.get(b"HIGHESTMODSEQ")),
            )
        )
    return found


def poll_folders(
    client: MailSession,
    sessions: sessionmaker[Session],
    *,
    mailbox_id: int,
    condstore: bool,
    qresync: bool,
) -> list[str]:
    """List the folders, record them, catch up the watched ones that changed.

    Returns the folders caught up: when any was, INBOX is no longer selected and the
    caller selects it again before its IDLE.
    """
    remote = list_folders(client, condstore=condstore)
    with session_scope(sessions) as db:
        changed = record_folders(db=db, mailbox_id=mailbox_id, remote=remote)
    for name in changed:
        catch_up(
            client,
            sessions,
            mailbox_id=mailbox_id,
            folder_name=name,
            condstore=condstore or None,
            qresync=qresync,
        )
    return changed


def _int(value: object) -> int | None:
    return int(value) if value is not None else None  # type: ignore[call-overload]
