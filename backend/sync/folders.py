"""Every watched folder, not only INBOX: listed, polled, and caught up when it changed.

Secretariats and many doctors file mail with server-side rules (Sieve): a lab result filed
into "Résultats" must ring the phone as if it had stayed in INBOX. INBOX keeps its IDLE;
the other folders are polled every `ESTAFETTE_FOLDER_POLL_SECONDS` on the same connection:
one LIST (roles from RFC 6154 SPECIAL-USE attributes) and one STATUS per folder (UIDNEXT,
UIDVALIDITY and, with CONDSTORE, HIGHESTMODSEQ: RFC 7162 §3.1.2). Only a folder whose
status moved is selected and caught up, with the same QRESYNC/CONDSTORE code as INBOX, so
a quiet mailbox costs 1 + N small commands a period and no SELECT.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from backend.mail.imap import MailSession
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
    """The selectable folders with their roles and status; INBOX's counts come from IDLE."""
    items = [b"MESSAGES", b"UNSEEN", b"UIDNEXT", b"UIDVALIDITY"]
    if condstore:
        items.append(b"HIGHESTMODSEQ")
    found: list[RemoteFolder] = []
    for attributes, _delimiter, name in client.list_folders():
        upper = {bytes(a).upper() for a in attributes}
        if upper & NOT_SELECTABLE:
            continue
        name = str(name)
        if name.upper() == "INBOX":
            # STATUS on the selected folder is discouraged (RFC 3501 §6.3.10).
            found.append(RemoteFolder("INBOX", "inbox"))
            continue
        role = next((r for a, r in ROLE_BY_ATTRIBUTE.items() if a in upper), None)
        status = client.folder_status(name, items)
        found.append(
            RemoteFolder(
                name,
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
