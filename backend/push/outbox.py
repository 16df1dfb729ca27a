"""Writing to the push outbox: the one way any part of the gateway asks for a push.

Callers pass their own session, so the outbox row commits (or rolls back) with the change
it announces: the sync worker's new message or flag change, or the messages API's flag
change or delete. The dispatcher (`backend.push.dispatcher`) does the rest.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.push.payloads import AUTH_REQUIRED, MAIL_READ, NEW_MAIL
from backend.push.wakeup import notify
from backend.storage.models import OutboxEvent


def announce_new(
    db: Session, *, mailbox_id: int, message_id: int, urgent: bool = False
) -> OutboxEvent:
    """A new unread message: a visible push to every member's devices.

    `urgent` (Importance: high, X-Priority: 1) goes out even in a user's quiet hours.
    """
    event = OutboxEvent(kind=NEW_MAIL, mailbox_id=mailbox_id, message_id=message_id, urgent=urgent)
    db.add(event)
    notify(db)
    return event


def announce_read(db: Session, *, mailbox_id: int, message_id: int | None = None) -> OutboxEvent:
    """A message was read or deleted somewhere: a silent `mail.read` push clears the others.

    Several in a row for one mailbox collapse into one push per device at dispatch time,
    with the unread count as it is then.
    """
    event = OutboxEvent(kind=MAIL_READ, mailbox_id=mailbox_id, message_id=message_id)
    db.add(event)
    notify(db)
    return event


def announce_auth_required(db: Session, *, mailbox_id: int) -> OutboxEvent:
    """The owner's provider refused to refresh their token: ask them to sign in again."""
    event = OutboxEvent(kind=AUTH_REQUIRED, mailbox_id=mailbox_id)
    db.add(event)
    notify(db)
    return event
