"""A push test's world: users, mailboxes, devices and new mail written as the gateway writes
them, for the push tests and the drills (devtools.drills)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from backend.push import outbox
from backend.storage.database import session_scope
from backend.storage.models import (
    Device,
    Folder,
    Mailbox,
    Membership,
    Message,
    OutboxEvent,
    PushDelivery,
    User,
    utcnow,
)


class World:
    """Builds the rows a push needs and reads back what the dispatcher recorded."""

    def __init__(self, services: Any) -> None:
        self.sessions = services.sessions

    def user(self, *, quiet: tuple[int, int, str] | None = None, on_call: bool = False) -> int:
        with session_scope(self.sessions) as db:
            user = User(
                username=f"user{uuid.uuid4().hex[:8]}",
                password_hash="unused",
                quiet_start_minute=quiet[0] if quiet else None,
                quiet_end_minute=quiet[1] if quiet else None,
                quiet_timezone=quiet[2] if quiet else None,
                on_call=on_call,
            )
            db.add(user)
            db.flush()
            return user.id

    def mailbox(self, *members: int) -> tuple[int, str]:
        """A mailbox with an INBOX, shared by `members`; returns (id, public id)."""
        with session_scope(self.sessions) as db:
            mailbox = Mailbox(
                address=f"{uuid.uuid4().hex[:8]}@chu-test.mssante.fr",
                kind="PER",
                imap_host="imap.invalid",
                imap_port=993,
                imap_security="tls",
                imap_auth="password",
            )
            db.add(mailbox)
            db.flush()
            db.add(Folder(mailbox_id=mailbox.id, name="INBOX", role="inbox", last_uid=0))
            for user_id in members:
                db.add(Membership(mailbox_id=mailbox.id, user_id=user_id, role="owner"))
            return mailbox.id, mailbox.public_id

    def device(
        self,
        user_id: int,
        token: str | None = None,
        *,
        push_key: bytes | None = None,
        token_age: timedelta = timedelta(0),
    ) -> int:
        with session_scope(self.sessions) as db:
            device = Device(
                user_id=user_id,
                name="Pixel",
                platform="android",
                push_token=token or f"token-{uuid.uuid4().hex}",
                push_token_updated_at=utcnow() - token_age,
                push_key=push_key,
            )
            db.add(device)
            db.flush()
            return device.id

    def devices(self, user_id: int, count: int) -> list[str]:
        """Many devices at once (batching tests); returns their tokens."""
        tokens = [f"bulk-{uuid.uuid4().hex}" for _ in range(count)]
        with session_scope(self.sessions) as db:
            now = utcnow()
            db.add_all(
                Device(
                    user_id=user_id,
                    name="Tablette",
                    platform="android",
                    push_token=t,
                    push_token_updated_at=now,
                )
                for t in tokens
            )
        return tokens

    def new_mail(
        self,
        mailbox_id: int,
        *,
        urgent: bool = False,
        subject: str = "Compte rendu",
        sender: dict | None = None,
    ) -> tuple[int, int]:
        """An unread message and its announcement, as sync writes them; (message, event)."""
        with session_scope(self.sessions) as db:
            folder_id = db.scalar(
                select(Folder.id).where(Folder.mailbox_id == mailbox_id, Folder.name == "INBOX")
            )
            uid = (
                db.scalar(select(func.max(Message.uid)).where(Message.folder_id == folder_id)) or 0
            ) + 1
            message = Message(
                mailbox_id=mailbox_id,
                folder_id=folder_id,
                uid=uid,
                sort_key=utcnow(),
                subject=subject,
                sender=sender or {"name": "Dr Martin", "address": "martin@ch.mssante.fr"},
                urgent=urgent,
            )
            db.add(message)
            db.flush()
            event = outbox.announce_new(
                db, mailbox_id=mailbox_id, message_id=message.id, urgent=urgent
            )
            db.flush()
            return message.id, event.id

    def read(self, mailbox_id: int, message_id: int) -> int:
        """The message was read elsewhere: flag it and announce it; returns the event id."""
        with session_scope(self.sessions) as db:
            db.execute(update(Message).where(Message.id == message_id).values(seen=True))
            event = outbox.announce_read(db, mailbox_id=mailbox_id, message_id=message_id)
            db.flush()
            return event.id

    def set_quiet(self, user_id: int, quiet: tuple[int, int, str] | None) -> None:
        with session_scope(self.sessions) as db:
            db.execute(
                update(User)
                .where(User.id == user_id)
                .values(
                    quiet_start_minute=quiet[0] if quiet else None,
                    quiet_end_minute=quiet[1] if quiet else None,
                    quiet_timezone=quiet[2] if quiet else None,
                )
            )

    def device_row(self, device_id: int) -> Device:
        with self.sessions() as db:
            return db.get(Device, device_id)

    def event(self, event_id: int) -> OutboxEvent:
        with self.sessions() as db:
            return db.get(OutboxEvent, event_id)

    def deliveries(self) -> list[tuple[int, int, str]]:
        with self.sessions() as db:
            return [
                tuple(row)
                for row in db.execute(
                    select(PushDelivery.outbox_id, PushDelivery.device_id, PushDelivery.status)
                )
            ]

    def make_due(self, when: datetime | None = None) -> None:
        """Pretend the clock reached every pending event's time (backoff, quiet hours)."""
        with session_scope(self.sessions) as db:
            db.execute(
                update(OutboxEvent)
                .where(OutboxEvent.done_at.is_(None))
                .values(available_at=when or utcnow() - timedelta(seconds=1))
            )
