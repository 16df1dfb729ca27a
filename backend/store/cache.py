"""Write what the server told us into the cache, with the push outbox in the same transaction.

Exactly one outbox row per new message, even across crashes: the message row and its outbox
row commit together, and the (folder, uid) unique key stops a second worker from storing the
same message twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from backend.mail.envelope import Envelope
from backend.mailboxes import change_log
from backend.push import outbox
from backend.storage.encryption import lookup_digest
from backend.storage.models import Folder, Mailbox, Message, utcnow
from backend.store import receipts

IN_CHUNK = 1000  # ids per IN (...) list


@dataclass(frozen=True)
class FolderPosition:
    """Where a folder's sync stands (RFC 3501 UIDVALIDITY, RFC 7162 HIGHESTMODSEQ)."""

    folder_id: int
    uidvalidity: int | None
    last_uid: int
    highest_modseq: int | None
    import_baseline_uid: int | None = None


def folder_position(
    *, db: Session, mailbox_id: int, name: str, role: str | None = None
) -> FolderPosition:
    folder = db.scalar(select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == name))
    if folder is None:
        folder = Folder(mailbox_id=mailbox_id, name=name, role=role, last_uid=0)
        db.add(folder)
        db.flush()
    return FolderPosition(
        folder.id,
        folder.uidvalidity,
        folder.last_uid,
        folder.highest_modseq,
        folder.import_baseline_uid,
    )


def reset_folder(
    *, db: Session, folder_id: int, uidvalidity: int, baseline_uid: int | None = None
) -> None:
    """A first sync, or UIDVALIDITY changed: every cached UID is meaningless, start afresh.

    `baseline_uid` (UIDNEXT now) commits with UIDVALIDITY, before any batch: an import
    that resumes after a crash still knows which mail was there before it began.
    """
    change_log.forget(db, Message.folder_id == folder_id)
    db.execute(
        update(Folder)
        .where(Folder.id == folder_id)
        .values(
            uidvalidity=uidvalidity,
            last_uid=0,
            highest_modseq=None,
            import_baseline_uid=baseline_uid,
        )
    )


def _next_change_seq(db: Session, mailbox_id: int) -> int:
    return change_log.next_change_seq(db, mailbox_id)


def store_new_messages(
    *,
    db: Session,
    mailbox_id: int,
    folder_id: int,
    envelopes: list[Envelope],
    announce: bool,
    announce_from_uid: int = 0,
    highest_modseq: int | None = None,
    attached: list[receipts.Attached] | None = None,
) -> list[int]:
    """Insert new envelopes (and, if `announce`, one outbox row each); return new row ids.

    Only UIDs from `announce_from_uid` up are announced: below is the mail that was
    already there when the folder's import began. A message moved here from another
    folder keeps its public id and is not announced again (`change_log.moved_here`), nor is
    a twin of one the mailbox holds elsewhere, outside INBOX (`_has_twin`).

    MDN/DSN reports attached to their original are appended to `attached`, for the caller
    to audit once this transaction has committed (receipts.audit_received).
    """
    if not envelopes:
        return []
    known = set(
        db.scalars(
            select(Message.uid).where(
                Message.folder_id == folder_id, Message.uid.in_([e.uid for e in envelopes])
            )
        )
    )
    seq = _next_change_seq(db, mailbox_id)
    into_inbox = db.get(Folder, folder_id).role == "inbox"
    new_ids: list[int] = []
    for env in envelopes:
        if env.uid in known:
            continue
        if receipt := receipts.attach_receipt(db=db, mailbox_id=mailbox_id, envelope=env):
            if attached is not None:
                attached.append(receipt)
            continue  # an MDN/DSN: shown on its original message, not as new mail
        digest = _identity_digest(env)
        moved_from = change_log.moved_here(db, mailbox_id, digest)
        # A moved message keeps its public id, which its sealed values are bound to: first.
        identity = {"public_id": moved_from} if moved_from is not None else {}
        message = Message(
            **identity,
            mailbox_id=mailbox_id,
            folder_id=folder_id,
            uid=env.uid,
            modseq=env.modseq,
            sort_key=env.date,
            subject=env.subject,
            sender=env.sender,
            recipients={"to": env.to, "cc": env.cc},
            message_id_header=env.message_id,
            message_id_digest=digest,
            mss_headers=env.mss_headers or None,
            patient=env.patient,
            seen=env.seen,
            flagged=env.flagged,
            answered=env.answered,
            has_attachments=env.has_attachments,
            size=env.size,
            mdn_requested=env.mdn_requested,
            urgent=env.urgent,
            malformed=env.malformed,
            change_seq=seq,
        )
        db.add(message)
        db.flush()
        new_ids.append(message.id)
        if (
            moved_from is None
            and announce
            and env.uid >= announce_from_uid
            and not env.seen
            and (into_inbox or not _has_twin(db, mailbox_id, message))
        ):
            outbox.announce_new(db, mailbox_id=mailbox_id, message_id=message.id, urgent=env.urgent)
    values: dict = {
        "last_uid": max(max(e.uid for e in envelopes), db.get(Folder, folder_id).last_uid)
    }
    if highest_modseq is not None:
        values["highest_modseq"] = highest_modseq
    db.execute(update(Folder).where(Folder.id == folder_id).values(**values))
    return new_ids


def _identity_digest(env: Envelope) -> str | None:
    """What recognises the same message in another folder (a move, a copy): its
    Message-ID, or, for the rare message without one, its date, sender, subject and size
    together. Either is a keyed digest: the values stay encrypted."""
    digest = receipts.message_id_digest(env.message_id)
    if digest is not None or env.malformed:
        return digest
    fingerprint = json.dumps(
        [env.date.isoformat(), env.sender, env.subject, env.size], sort_keys=True, default=str
    )
    return lookup_digest(fingerprint, "message-fingerprint")


def _has_twin(db: Session, mailbox_id: int, message: Message) -> bool:
    """Whether the mailbox already holds this message in another folder: a copy filed
    by a rule (Sieve `fileinto :copy`), or a move whose expunge we have not seen yet. The
    phone was told of it once; a folder other than INBOX does not ring it again."""
    if message.message_id_digest is None:
        return False
    return (
        db.scalar(
            select(Message.id)
            .where(
                Message.mailbox_id == mailbox_id,
                Message.message_id_digest == message.message_id_digest,
                Message.id != message.id,
            )
            .limit(1)
        )
        is not None
    )


def remove_messages(*, db: Session, message_ids: list[int]) -> int:
    """Drop expunged messages from the cache; unread ones clear their notifications.

    In chunks: a folder emptied on the desktop can name more messages than a statement
    may carry parameters (SQLite 32,766, PostgreSQL 65,535).
    """
    cleared: set[int] = set()  # mailboxes whose badge went down
    for start in range(0, len(message_ids), IN_CHUNK):
        chunk = message_ids[start : start + IN_CHUNK]
        cleared.update(
            db.scalars(
                select(Message.mailbox_id)
                .where(Message.id.in_(chunk), Message.seen.is_(False))
                .distinct()
            )
        )
        change_log.forget(db, Message.id.in_(chunk))
    for mailbox_id in sorted(cleared):
        outbox.announce_read(db, mailbox_id=mailbox_id)  # one carries the new count
    return len(message_ids)


def set_sync_state(*, db: Session, mailbox_id: int, state: str, detail: str | None = None) -> None:
    """What the apps and the admin see: ok, connecting, or error with a human reason.

    `sync_changed_at` moves only when the state does: a mailbox retried in `error` every
    few minutes has been in error since its first failure (the alert's "for 10 min")."""
    changed_at = case((Mailbox.sync_state == state, Mailbox.sync_changed_at), else_=utcnow())
    db.execute(
        update(Mailbox)
        .where(Mailbox.id == mailbox_id)
        .values(sync_state=state, sync_detail=detail, sync_changed_at=changed_at)
    )
