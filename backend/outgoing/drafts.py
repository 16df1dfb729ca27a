"""Drafts: a message begun on the phone, kept in the mailbox's Drafts folder on the server.

So a draft begun on the phone is finished on the desktop, and the other way round: the
draft is an ordinary message with the \\Draft flag in the \\Drafts folder (RFC 6154),
APPENDed whole. Saving again APPENDs the new version, then expunges the old one (IMAP has
no replace in place), so a draft has a new id after each save. No trust-space check yet:
a draft may name a recipient being typed; sending it checks, as any send does.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from backend import errors
from backend.config import Settings
from backend.mail.imap import DRAFT, SEEN, MailSession, ProtocolError
from backend.mail.sessions import imap_session
from backend.outgoing import appended
from backend.outgoing import compose as composer
from backend.reading.messages import Located
from backend.storage.models import Mailbox
from backend.store import cache as store
from backend.store.actions import expunge_uid

NOT_SAVED = "The mailbox server cannot be reached right now; the draft was not saved"


@dataclass(frozen=True)
class DraftRequest:
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""


@dataclass(frozen=True)
class SavedDraft:
    id: str | None  # the cached draft; None when the server gave no APPENDUID
    message_id: str


def save_draft(
    *,
    db: Session,
    settings: Settings,
    mailbox: Mailbox,
    request: DraftRequest,
    replacing: Located | None = None,
) -> SavedDraft:
    """APPEND the draft to Drafts (\\Draft, \\Seen), then drop the version it replaces."""
    if replacing is not None and replacing.folder.role != "drafts":
        raise errors.NotFound("no such draft")
    draft = composer.Draft(
        sender=mailbox.address,
        sender_name=mailbox.display_name,
        to=request.to,
        cc=request.cc,
        subject=request.subject,
        text=request.text,
        nil=settings.nil,
    )
    message = composer.compose(draft)
    raw = composer.sender_copy(message, request.bcc)  # the desktop shows its Bcc too
    with imap_session(mailbox, settings, unreachable=NOT_SAVED) as client:
        try:
            draft_id = appended.append_and_cache(
                db, client, mailbox, raw, role="drafts", flags=(DRAFT, SEEN), has_attachments=False
            )
            if replacing is not None:
                _expunge(client, replacing)
        except ProtocolError as exc:
            raise errors.MailboxUnavailable(NOT_SAVED) from exc
    if replacing is not None:
        store.remove_messages(db=db, message_ids=[replacing.message.id])
        db.commit()
    return SavedDraft(draft_id, str(message["Message-ID"]))


def discard_draft(*, db: Session, settings: Settings, located: Located) -> None:
    """Delete the draft on the server, then from the cache."""
    if located.folder.role != "drafts":
        raise errors.NotFound("no such draft")
    with imap_session(located.mailbox, settings) as client:
        try:
            _expunge(client, located)
        except ProtocolError as exc:
            raise errors.MailboxUnavailable("The mailbox server broke the session") from exc
    store.remove_messages(db=db, message_ids=[located.message.id])
    db.commit()


def _expunge(client: MailSession, located: Located) -> None:
    client.select_folder(located.folder.name)
    expunge_uid(client, located.message.uid)
