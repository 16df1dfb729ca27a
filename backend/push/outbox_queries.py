"""The dispatcher's SQL: claiming outbox events, finding whom to tell, recording deliveries.

Beside `backend.push.outbox` (which writes events): everything the dispatcher reads and
writes of the outbox, the deliveries and the devices, as plain functions over a session.
The decisions (what to send, when to retry) stay in `backend.push.dispatcher`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Row, Text, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from backend.push import payloads, previews
from backend.storage import liveness
from backend.storage.database import array_parameter, one_of, session_scope
from backend.storage.models import (
    Device,
    Folder,
    Mailbox,
    Membership,
    Message,
    OutboxEvent,
    PushDelivery,
    User,
    UTCDateTime,
)

# For UPDATEs by id list: our sessions hold no loaded rows to keep in step, and SQLAlchemy,
# unable to evaluate `= ANY(...)` in Python, would otherwise fetch back every id it updated.
UNLOADED = {"synchronize_session": False}


@dataclass(frozen=True, slots=True)
class Recipient:
    """One live device of a mailbox member, with what decides whether it rings now."""

    device_id: int
    token: str
    push_key: bytes | None
    on_call: bool
    quiet: tuple[int | None, int | None, str | None]
    owner: bool = False  # only the mailbox's owner is asked to sign in again


def recipients(
    db: Session, mailbox_ids: set[int], fresh_since: datetime, *, with_keys: bool
) -> tuple[dict[int, list[Recipient]], dict[int, str]]:
    """Each mailbox's members' live devices (signed in, token refreshed since
    `fresh_since`), and the public ids of the mailboxes that have any. Preview keys are
    read (and opened) only `with_keys`."""
    columns = [
        Membership.mailbox_id.label("mailbox_id"),
        Membership.role.label("role"),
        Device.id.label("device_id"),
        Device.push_token.label("push_token"),
        User.on_call.label("on_call"),
        User.quiet_start_minute.label("quiet_start"),
        User.quiet_end_minute.label("quiet_end"),
        User.quiet_timezone.label("quiet_timezone"),
        Mailbox.public_id.label("mailbox_public_id"),
        Device.public_id.label("device_public_id"),  # sealed token and key are bound to it
    ]
    if with_keys:
        columns.append(Device.push_key.label("push_key"))
    rows = db.execute(
        select(*columns)
        .join(Mailbox, Mailbox.id == Membership.mailbox_id)
        .join(User, User.id == Membership.user_id)
        .join(Device, Device.user_id == User.id)
        .where(
            one_of(db, Membership.mailbox_id, mailbox_ids),
            User.disabled.is_(False),
            Device.revoked_at.is_(None),
            Device.push_token.is_not(None),
            or_(
                Device.push_token_updated_at.is_(None),
                Device.push_token_updated_at >= fresh_since,
            ),
        )
        .order_by(Device.id)
    ).all()
    found: dict[int, list[Recipient]] = defaultdict(list)
    public_ids: dict[int, str] = {}
    token_field, key_field = Device.sealed_field("push_token"), Device.sealed_field("push_key")
    for row in rows:
        token = token_field.open(row.device_public_id, row.push_token)
        key = key_field.open(row.device_public_id, row.push_key) if with_keys else None
        found[row.mailbox_id].append(
            Recipient(
                row.device_id,
                token,
                key,
                bool(row.on_call),
                (row.quiet_start, row.quiet_end, row.quiet_timezone),
                row.role == "owner",
            )
        )
        public_ids[row.mailbox_id] = row.mailbox_public_id
    return found, public_ids


def update_device_states(
    sessions: sessionmaker[Session], states: dict[str, set[int]], now: datetime
) -> None:
    """What `GET /devices` shows of the last push; a later outcome in the chunk wins:
    pruned beats ok for the same device."""
    if not states:
        return
    with session_scope(sessions) as db:
        for status in ("retrying", "ok", "failed", "pruned"):
            ids = states.get(status)
            if not ids:
                continue
            db.execute(
                update(Device)
                .where(one_of(db, Device.id, ids))
                .values(**device_push_state(status, now)),
                execution_options=UNLOADED,
            )


def device_push_state(status: str, now: datetime) -> dict:
    """The device columns a push outcome sets: a retry keeps the last push's time, and a
    pruned token is dropped, so the app knows to register again."""
    values: dict = {"last_push_status": status}
    if status != "retrying":
        values["last_push_at"] = now
    if status == "pruned":
        values["push_token"] = None
    return values


def claim(
    db: Session,
    limit: int,
    lease: timedelta,
    now: datetime,
    name: str,
    busy: frozenset[int] = frozenset(),
) -> list[Row]:
    """Take up to `limit` due events and lease them to `name`, in one statement.

    `FOR UPDATE SKIP LOCKED` lets dispatchers claim side by side on PostgreSQL; on SQLite
    the single UPDATE takes the write lock at once, so two claims never interleave. On
    PostgreSQL an event whose claimer's session ended is due at once, lease or not, even
    the claimer's own after a database restart cut its session; but never the events in
    `busy`, the ones this dispatcher has on the wire: taking them again would send twice.
    """
    due_now = OutboxEvent.available_at <= now
    if db.get_bind().dialect.name == "postgresql":
        due_now = or_(due_now, liveness.orphaned(OutboxEvent.claimed_by))
    due = (
        select(OutboxEvent.id)
        .where(OutboxEvent.done_at.is_(None), due_now, OutboxEvent.id.not_in(busy))
        .order_by(OutboxEvent.available_at, OutboxEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = db.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(due))
        .values(available_at=now + lease, attempts=OutboxEvent.attempts + 1, claimed_by=name)
        .returning(
            OutboxEvent.id,
            OutboxEvent.kind,
            OutboxEvent.mailbox_id,
            OutboxEvent.message_id,
            OutboxEvent.urgent,
            OutboxEvent.created_at,
            OutboxEvent.attempts,
        )
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(claimed, key=lambda row: row.id)


def served(db: Session, event_ids: list[int]) -> set[tuple[int, int]]:
    """(event, device) pairs already delivered: by a dispatcher whose lease ran out, or
    before the event waited out someone's quiet hours."""
    return set(
        db.execute(
            select(PushDelivery.outbox_id, PushDelivery.device_id).where(
                one_of(db, PushDelivery.outbox_id, event_ids)
            )
        ).all()
    )


def unread_counts(db: Session, mailbox_ids: set[int]) -> dict[int, int]:
    """The badge: unread messages in each mailbox's INBOX, as they are now."""
    return dict(
        db.execute(
            select(Message.mailbox_id, func.count(Message.id))
            .join(Folder, Folder.id == Message.folder_id)
            .where(
                one_of(db, Message.mailbox_id, mailbox_ids),
                Folder.name == "INBOX",
                Message.seen.is_(False),
            )
            .group_by(Message.mailbox_id)
        ).all()
    )


def unread_messages(db: Session, message_ids: list[int]) -> set[int]:
    if not message_ids:
        return set()
    return set(
        db.scalars(
            select(Message.id).where(one_of(db, Message.id, message_ids), Message.seen.is_(False))
        )
    )


def previews_of(db: Session, message_ids: list[int]) -> dict[int, dict[str, str]]:
    """Sender and subject of the messages to preview (decrypted from the cache)."""
    messages = db.scalars(select(Message).where(one_of(db, Message.id, message_ids)))
    return {m.id: previews.preview_of(m.sender, m.subject) for m in messages}


def latest_unread_news(db: Session, mailbox_ids: set[int]) -> dict[int, int]:
    """Per mailbox, the newest queued `mail.new` whose message is still unread: the one
    push a burst comes down to (in this batch or a later one)."""
    return dict(
        db.execute(
            select(OutboxEvent.mailbox_id, func.max(OutboxEvent.id))
            .join(Message, Message.id == OutboxEvent.message_id)
            .where(
                one_of(db, OutboxEvent.mailbox_id, mailbox_ids),
                OutboxEvent.done_at.is_(None),
                OutboxEvent.kind == payloads.NEW_MAIL,
                Message.seen.is_(False),
            )
            .group_by(OutboxEvent.mailbox_id)
        ).all()
    )


def insert_deliveries(db: Session, deliveries: list[dict], sent_at: datetime) -> None:
    """Record a chunk's deliveries; one already recorded (by a dispatcher whose lease ran
    out) stays as it was.

    On PostgreSQL the chunk goes as three arrays, unnested by the server: row by row, the
    parameters of 500 rows were the largest cost left in the dispatcher.
    """
    if db.get_bind().dialect.name == "postgresql":
        rows = (
            func.unnest(
                array_parameter(d["outbox_id"] for d in deliveries),
                array_parameter(d["device_id"] for d in deliveries),
                array_parameter((d["status"] for d in deliveries), Text),
            )
            .table_valued("outbox_id", "device_id", "status")
            .render_derived()
        )
        columns = [rows.c.outbox_id, rows.c.device_id, rows.c.status]
        db.execute(
            postgresql.insert(PushDelivery)
            .from_select(
                ["outbox_id", "device_id", "status", "sent_at"],
                select(*columns, literal(sent_at, UTCDateTime)),
            )
            .on_conflict_do_nothing()
        )
        return
    db.execute(sqlite.insert(PushDelivery).on_conflict_do_nothing(), deliveries)


def extend_lease(db: Session, event_ids: Iterable[int], until: datetime) -> None:
    """Hold still-unfinished events for their claimer until `until`."""
    db.execute(
        update(OutboxEvent)
        .where(one_of(db, OutboxEvent.id, event_ids), OutboxEvent.done_at.is_(None))
        .values(available_at=until),
        execution_options=UNLOADED,
    )


def mark_done(db: Session, event_ids: list[int], now: datetime) -> None:
    if event_ids:
        db.execute(
            update(OutboxEvent)
            .where(one_of(db, OutboxEvent.id, event_ids))
            .values(done_at=now, claimed_by=None),
            execution_options=UNLOADED,
        )


def requeue(db: Session, event_id: int, due: datetime, *, attempt_counts: bool) -> None:
    """Back in the queue, unclaimed, for `due`; a wait that was no failed attempt
    (quiet hours, FCM's outage) gives back the attempt its claim took."""
    values: dict = {"claimed_by": None, "available_at": due}
    if not attempt_counts:
        values["attempts"] = OutboxEvent.attempts - 1
    db.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(**values))


def drop_tokens_unrefreshed_since(db: Session, since: datetime) -> int:
    """Tokens not refreshed since `since` are dropped, as Firebase advises; how many."""
    return db.execute(
        update(Device)
        .where(Device.push_token.is_not(None), Device.push_token_updated_at < since)
        .values(push_token=None, last_push_status="pruned")
    ).rowcount


def forget_done_before(db: Session, before: datetime) -> None:
    db.execute(delete(OutboxEvent).where(OutboxEvent.done_at < before))


def queue_depth(db: Session) -> int:
    return db.scalar(select(func.count(OutboxEvent.id)).where(OutboxEvent.done_at.is_(None))) or 0
