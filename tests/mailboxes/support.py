"""What the listing and sync specifications share: a signed-in app, mailboxes, cached mail.

The cache is filled through the sync store (the same calls the IMAP sync makes), so these
specifications need no IMAP server; the ones about the full path use Dovecot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from backend.accounts import users
from backend.mail.envelope import Envelope
from backend.mailboxes import change_log, registry
from backend.storage.database import session_scope
from backend.storage.models import Mailbox, Membership, Message
from backend.store import cache as store
from tests.factories import create_user, unique
from tests.support import Authenticator, bearer

EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def sign_in(client: Any, services: Any) -> tuple[str, dict[str, str]]:
    """A new user signed in from a phone: (username, Authorization header)."""
    username = create_user(services)
    tokens = Authenticator().sign_in(client, username)
    return username, bearer(tokens["access_token"])


def make_mailbox(
    services: Any, *, member: str | None = None, role: str = "owner", kind: str = "PER"
) -> str:
    """A mailbox (its IMAP server is never contacted here) and optionally a member."""
    with session_scope(services.sessions) as db:
        mailbox = registry.create_mailbox(
            db=db,
            address=f"{unique('bal.')}@chu-test.mssante.fr",
            kind=kind,
            display_name=f"{kind} box",
            imap=registry.ServerSettings("imap.invalid", 993, "tls", "password", None, "x"),
        )
        if member is not None:
            user = users.find_user(db=db, username=member)
            registry.grant(db=db, mailbox=mailbox, user=user, role=role)
        return mailbox.public_id


def grant(services: Any, mailbox_id: str, username: str, role: str = "delegate") -> None:
    with session_scope(services.sessions) as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == mailbox_id))
        registry.grant(
            db=db, mailbox=mailbox, user=users.find_user(db=db, username=username), role=role
        )


def revoke(services: Any, mailbox_id: str, username: str) -> None:
    with session_scope(services.sessions) as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == mailbox_id))
        user = users.find_user(db=db, username=username)
        db.delete(
            db.scalar(
                select(Membership).where(
                    Membership.mailbox_id == mailbox.id, Membership.user_id == user.id
                )
            )
        )


def deliver(
    services: Any,
    mailbox_id: str,
    count: int = 1,
    *,
    folder: str = "INBOX",
    seen: bool = False,
    start: datetime = EPOCH,
    subject: str = "Compte rendu",
) -> list[str]:
    """Store `count` envelopes dated one minute apart after `start`; their public ids."""
    with session_scope(services.sessions) as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == mailbox_id))
        position = store.folder_position(db=db, mailbox_id=mailbox.id, name=folder)
        first_uid = position.last_uid + 1
        envelopes = [
            Envelope(
                uid=first_uid + i,
                date=start + timedelta(minutes=i),
                subject=f"{subject} {i}",
                sender={"name": "Dr Test", "address": "test@ch-exemple.mssante.fr"},
                to=[{"name": None, "address": mailbox.address}],
                cc=[],
                message_id=f"<{unique('m')}@ch-exemple.mssante.fr>",
                seen=seen,
                flagged=False,
                answered=False,
                size=1000 + i,
                has_attachments=False,
                mdn_requested=False,
                urgent=False,
            )
            for i in range(count)
        ]
        new_ids = store.store_new_messages(
            db=db,
            mailbox_id=mailbox.id,
            folder_id=position.folder_id,
            envelopes=envelopes,
            announce=False,
        )
        return list(db.scalars(select(Message.public_id).where(Message.id.in_(new_ids))))


def expunge(services: Any, message_ids: list[str]) -> None:
    """The IMAP server lost these messages: the sync drops them from the cache."""
    with session_scope(services.sessions) as db:
        ids = list(db.scalars(select(Message.id).where(Message.public_id.in_(message_ids))))
        store.remove_messages(db=db, message_ids=ids)


def mark_seen(services: Any, message_id: str) -> None:
    """A flag change seen by the sync, numbered like the sync numbers it."""
    with session_scope(services.sessions) as db:
        message = db.scalar(select(Message).where(Message.public_id == message_id))
        message.seen = True
        message.change_seq = change_log.next_change_seq(db, message.mailbox_id)
