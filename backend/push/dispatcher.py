"""The push dispatcher: drains the outbox into FCM, one delivery per (event, device).

Claiming. Several dispatchers may run at once. Each claims a batch of due events with
`FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite serialises writers anyway) and, in the same
short transaction, leases them by moving `available_at` `lease_seconds` ahead and naming
itself in `claimed_by`. On PostgreSQL the claim lives as long as the dispatcher's
database session (`backend.storage.liveness`): a dispatcher SIGKILLed mid-batch loses its
session, and the others take its events at once. The time lease is the fallback, for a
dispatcher alive but hung, and for SQLite.

Overlap. A chunk's deliveries are committed before the next chunk leaves, so nothing
answered is ever left unrecorded behind a newer request; everything else overlaps with FCM
answering: device states, settling events, claiming and planning the next batch (`drain`).
Only one chunk is on the wire at a time: pushes leave in outbox order.

Exactly once per device. A `push_deliveries` row per (event, device), unique on the pair,
is the record of what was sent: a resumed event skips every device that already has one,
so nothing is lost and nothing is sent twice. The one window this cannot close is a
dispatcher killed after FCM accepted a push but before the delivery row committed: the
resumed event sends that push again, at most the chunk on the wire (`SEND_CHUNK`, the
requests in flight). It is harmless by construction: every push of a mailbox carries the
same collapse key (`collapse_key` on Android, `apns-collapse-id` on iOS), so the second
one replaces the first on the phone instead of adding a notification.
A batch slow enough to use a quarter of its lease has it renewed as each chunk goes out,
so the lease must outlast a quarter of itself plus one chunk and its recording
(`FcmSender` bounds each request by its timeout).

What FCM answers (`backend.push.outcomes`):
- ok: delivery `ok`, device `last_push_status=ok`;
- prune (UNREGISTERED, or INVALID_ARGUMENT blaming the token): the token is dropped,
  device `pruned`, so `GET /devices` tells the app to register again;
- retry (429, 5xx, no answer): the event comes back after FCM's Retry-After, or an
  exponential backoff with jitter; device `retrying`. Retries are bounded by time, not by a
  count: a push is worth sending until it is `stale_seconds` old (then its delivery is
  `expired`, never `failed`) or its message has been read. When most answers are
  transient refusals, FCM itself is down: the breaker (`backend.push.breaker`) pauses all
  sending, then probes, instead of each push burning its attempts;
- failed (bad payload, sender mismatch, APNs auth): a real refusal, delivery and device
  `failed`.

Coalescing. A burst into one mailbox is one push per device, not one per message: a
`mail.new` is not sent while a newer unread `mail.new` of the same mailbox is queued (in
the batch or behind it); that newer one carries the unread count as it is then, under the
same collapse key. Urgent mail is never folded into a push that is not.

Tokens not refreshed for `STALE_TOKEN_DAYS` are dropped, as Firebase advises.

Quiet hours: a `mail.new` for a user in their quiet hours waits until they end, unless
the user is on call or the message is urgent. A `mail.read` (silent, it only clears
notifications) always goes. A `mail.new` whose message was read or deleted before its
turn came is not sent: a phone should not ring for mail already dealt with.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from firebase_admin import messaging
from sqlalchemy import (
    Row,
    Text,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from backend.metrics import PUSH_OUTCOMES as OUTCOMES
from backend.metrics import PUSH_PRUNED as PRUNED
from backend.metrics import PUSH_QUEUE_DEPTH as QUEUE_DEPTH
from backend.metrics import PUSH_QUEUE_TO_SEND as QUEUE_TO_SEND
from backend.push import payloads, previews
from backend.push.breaker import Breaker, backoff_delay
from backend.push.fcm import Sender
from backend.push.outcomes import Outcome, OutcomeKind
from backend.push.quiet_hours import quiet_hours_of
from backend.push.wakeup import OutboxWakeup
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
    utcnow,
)

log = logging.getLogger("estafette.push")

# For UPDATEs by id list: our sessions hold no loaded rows to keep in step, and SQLAlchemy,
# unable to evaluate `= ANY(...)` in Python, would otherwise fetch back every id it updated.
_UNLOADED = {"synchronize_session": False}

LEASE_SECONDS = 120
BATCH_EVENTS = 500
# One send_each_async call, recorded as soon as it is answered: what a killed dispatcher
# leaves in doubt. As many as the sender keeps on the wire (fcm.DEFAULT_MAX_IN_FLIGHT).
SEND_CHUNK = 100
STALE_SECONDS = 3600  # a push older than this is no longer worth sending
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0
STALE_TOKEN_DAYS = 270
KEEP_DONE_DAYS = 7
HOUSEKEEPING_SECONDS = 60.0
QUEUE_DEPTH_SECONDS = 1.0
ERROR_WAIT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class _Target:
    event_id: int
    device_id: int
    message: messaging.Message


@dataclass(slots=True)
class _Plan:
    """What one claimed batch comes to: sends, waits, and events with nothing left to do."""

    attempts: dict[int, int]  # event id -> attempts so far, this claim included
    created: dict[int, datetime]
    targets: list[_Target] = field(default_factory=list)
    deferred: dict[int, datetime] = field(default_factory=dict)  # event id -> quiet hours end
    retry_after: dict[int, float] = field(default_factory=dict)  # event id -> FCM's delay
    held: set[int] = field(default_factory=set)  # events with pushes the breaker kept back
    expired: list[tuple[int, int]] = field(default_factory=list)  # (event, device), stale
    leased_at: float = field(default_factory=time.monotonic)  # planned as soon as claimed


@dataclass(slots=True)
class _Sending:
    """A chunk on the wire: FCM's answers arrive in `outcomes`."""

    plan: _Plan
    chunk: list[_Target]
    outcomes: Future[list[Outcome]]
    last: bool  # the plan's last chunk: once recorded, the plan's events are settled


@dataclass(frozen=True, slots=True)
class _Answered:
    """A chunk whose deliveries are committed; its devices' states are still to be set."""

    plan: _Plan
    device_states: dict[str, set[int]]
    at: datetime
    last: bool


@dataclass(frozen=True, slots=True)
class _Recipient:
    device_id: int
    token: str
    push_key: bytes | None
    on_call: bool
    quiet: tuple[int | None, int | None, str | None]


class Dispatcher:
    """Claims outbox events, fans them out to devices, sends, and records each outcome."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sender: Sender,
        *,
        batch_events: int = BATCH_EVENTS,
        lease_seconds: float = LEASE_SECONDS,
        previews: bool = False,
        stale_seconds: float = STALE_SECONDS,
        clock: Callable[[], datetime] = utcnow,
        breaker: Breaker | None = None,
        name: str | None = None,
    ) -> None:
        """`clock` is the time everything but the lease renewal is judged by (tests live
        through long outages with a clock of their own); `name` is what `claimed_by` says."""
        self._sessions = sessions
        self._sender = sender
        self._batch = batch_events
        self._lease = timedelta(seconds=lease_seconds)
        self._previews = previews
        self._stale = timedelta(seconds=stale_seconds)
        self._clock = clock
        self._breaker = breaker or Breaker(clock=lambda: clock().timestamp())
        host = socket.gethostname()[:32]
        self.name = name or f"push:{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._engine = sessions.kw["bind"]
        self._postgres = self._engine.dialect.name == "postgresql"
        self._next_housekeeping = 0.0
        self._next_depth = 0.0

    def run(self, stop: threading.Event) -> None:
        """Drain until `stop` is set; when the outbox is empty, wait for a NOTIFY or a poll."""
        log.info("push dispatcher starting")
        wakeup = OutboxWakeup(self._sessions.kw["bind"])
        try:
            while not stop.is_set():
                try:
                    worked = self.drain(stop)
                except Exception:
                    log.exception("dispatch failed; retrying")
                    stop.wait(ERROR_WAIT_SECONDS)  # a database outage must not flood the log
                    continue
                pause = self._breaker.wait_seconds()
                if pause:
                    stop.wait(pause)  # FCM is down: nothing goes until the next probe
                elif not worked:
                    wakeup.wait(stop)
        finally:
            wakeup.close()
            liveness.let_go(self._engine, self.name)
        log.info("push dispatcher stopped")

    def drain(self, stop: threading.Event | None = None) -> int:
        """Claim-send-record rounds until nothing is due (or `stop`); returns events handled.

        The rounds overlap: while FCM answers one chunk, the previous chunk's outcomes are
        recorded and the next batch is claimed and planned. Chunks still go one after the
        other, so a device gets its pushes in outbox order. Before each chunk the breaker
        says how many may go: all, a probe, or none (the rest of the batch then waits).
        """
        handled = 0
        sending: _Sending | None = None
        answered: _Answered | None = None  # deliveries recorded; device states to follow
        try:
            plan = self._next_plan() if self._breaker.allowance() != 0 else None
            while plan is not None:
                handled += len(plan.attempts)
                position, targets = 0, plan.targets
                while position < len(targets):
                    if sending is not None:
                        # Its deliveries are committed before the next chunk leaves: a
                        # kill leaves in doubt only the chunk on the wire.
                        answered, sending = self._record_deliveries(sending), None
                    allowance = self._breaker.allowance()
                    if allowance == 0:
                        plan.held.update(t.event_id for t in targets[position:])
                        break
                    size = SEND_CHUNK if allowance is None else min(allowance, SEND_CHUNK)
                    chunk = targets[position : position + size]
                    position += len(chunk)
                    future = self._sender.submit([target.message for target in chunk])
                    self._renew_lease(plan)
                    if answered is not None:
                        self._conclude(answered)  # while FCM answers the new chunk
                        answered = None
                    sending = _Sending(plan, chunk, future, last=position == len(targets))
                if answered is not None:
                    self._conclude(answered)
                    answered = None
                if sending is None or sending.plan is not plan:
                    self._settle(plan)  # nothing (more) on the wire for this plan
                if stop is not None and stop.is_set():
                    break
                plan = self._next_plan() if self._breaker.allowance() != 0 else None
        finally:
            # What FCM accepted is recorded, even on the way out.
            if sending is not None:
                answered = self._record_deliveries(sending)
            if answered is not None:
                self._conclude(answered)
        if handled:
            with session_scope(self._sessions) as db:
                self._update_queue_depth(db, force=True)  # exact while the dispatcher idles
        return handled

    def _next_plan(self) -> _Plan | None:
        """Claim a batch of due events and plan it; None when nothing is due."""
        self._housekeeping()
        if self._postgres:
            liveness.hold(self._engine, self.name)  # before a claim can name us
        with session_scope(self._sessions) as db:
            events = _claim(db, self._batch, self._lease, self._clock(), self.name)
            return self._plan(db, events) if events else None

    def _renew_lease(self, plan: _Plan) -> None:
        """Once a quarter of the lease has gone, hold the plan's events for a whole lease
        from now: a batch may outlast one lease (FCM slow to answer), and no dispatcher,
        this one included, may claim them meanwhile. A batch that goes quickly never
        pays for it."""
        if time.monotonic() - plan.leased_at < self._lease.total_seconds() / 4:
            return
        plan.leased_at = time.monotonic()
        with session_scope(self._sessions) as db:
            db.execute(
                update(OutboxEvent)
                .where(one_of(db, OutboxEvent.id, plan.attempts), OutboxEvent.done_at.is_(None))
                .values(available_at=self._clock() + self._lease),
                execution_options=_UNLOADED,
            )

    def _conclude(self, answered: _Answered) -> None:
        """The device states of a recorded chunk; after the plan's last, settle its events."""
        _update_device_states(self._sessions, answered.device_states, answered.at)
        if answered.last:
            self._settle(answered.plan)

    def _settle(self, plan: _Plan) -> None:
        now = self._clock()
        with session_scope(self._sessions) as db:
            if plan.expired:
                _insert_ignoring_duplicates(
                    db,
                    [
                        {"outbox_id": e, "device_id": d, "status": "expired", "sent_at": now}
                        for e, d in plan.expired
                    ],
                    now,
                )
            self._settle_events(db, plan, now)
            self._update_queue_depth(db, force=False)

    # -- planning -------------------------------------------------------------------------

    def _plan(self, db: Session, events: list[Row]) -> _Plan:
        """Every (event, device) still owed a push, and the events that must wait."""
        now = self._clock()
        plan = _Plan({e.id: e.attempts for e in events}, {e.id: e.created_at for e in events})
        mailbox_ids = {e.mailbox_id for e in events}
        recipients, public_ids = self._recipients(db, mailbox_ids, now)
        served = _served(db, [e.id for e in events])
        unread = _unread_counts(db, mailbox_ids)
        news = [e for e in events if e.kind == payloads.NEW_MAIL]
        pending = _unread_messages(db, [e.message_id for e in news if e.message_id is not None])
        wants_previews = self._previews and any(
            r.push_key for e in news for r in recipients.get(e.mailbox_id, ())
        )
        shown = _previews(db, list(pending)) if wants_previews else {}
        latest_read = _latest_read_per_mailbox(events)
        latest_new = _latest_unread_news(db, mailbox_ids)

        for event in events:
            mailbox = public_ids.get(event.mailbox_id)
            if mailbox is None:
                continue  # nobody to tell
            count = unread.get(event.mailbox_id, 0)
            if event.kind == payloads.NEW_MAIL and event.message_id not in pending:
                continue  # read or deleted before its turn: nothing to ring for
            if (
                event.kind == payloads.NEW_MAIL
                and not event.urgent
                and event.id < latest_new.get(event.mailbox_id, 0)
            ):
                continue  # a newer mail.new of this mailbox is queued: it brings the count
            if event.kind != payloads.NEW_MAIL and latest_read[event.mailbox_id] != event.id:
                continue  # a newer mail.read in this batch carries the same news
            stale = now - event.created_at > self._stale
            for recipient in recipients.get(event.mailbox_id, ()):
                if (event.id, recipient.device_id) in served:
                    continue
                if stale:
                    plan.expired.append((event.id, recipient.device_id))
                    continue
                if event.kind == payloads.NEW_MAIL:
                    if not (event.urgent or recipient.on_call):
                        quiet = quiet_hours_of(*recipient.quiet)
                        until = quiet.ends_after(now) if quiet else None
                        if until is not None:
                            plan.deferred[event.id] = min(plan.deferred.get(event.id, until), until)
                            continue
                    sealed = None
                    if event.message_id in shown and _usable_key(recipient.push_key):
                        sealed = previews.seal(recipient.push_key, mailbox, shown[event.message_id])
                    message = payloads.new_mail(recipient.token, mailbox, count, sealed)
                else:
                    message = payloads.mail_read(recipient.token, mailbox, count)
                plan.targets.append(_Target(event.id, recipient.device_id, message))
        return plan

    def _recipients(
        self, db: Session, mailbox_ids: set[int], now: datetime
    ) -> tuple[dict[int, list[_Recipient]], dict[int, str]]:
        """Each mailbox's members' live devices (signed in, token fresh enough), and the
        public ids of the mailboxes that have any."""
        stale = now - timedelta(days=STALE_TOKEN_DAYS)
        columns = [
            Membership.mailbox_id,
            Device.id,
            Device.push_token,
            User.on_call,
            User.quiet_start_minute,
            User.quiet_end_minute,
            User.quiet_timezone,
            Mailbox.public_id,
            Device.public_id,  # sealed token and key are bound to it
        ]
        if self._previews:
            columns.append(Device.push_key)
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
                or_(Device.push_token_updated_at.is_(None), Device.push_token_updated_at >= stale),
            )
            .order_by(Device.id)
        ).all()
        recipients: dict[int, list[_Recipient]] = defaultdict(list)
        public_ids: dict[int, str] = {}
        token_field, key_field = Device.sealed_field("push_token"), Device.sealed_field("push_key")
        for row in rows:
            token = token_field.open(row[8], row[2])
            key = key_field.open(row[8], row[9]) if self._previews else None
            recipients[row[0]].append(
                _Recipient(row[1], token, key, bool(row[3]), (row[4], row[5], row[6]))
            )
            public_ids[row[0]] = row[7]
        return recipients, public_ids

    # -- recording ------------------------------------------------------------------------

    def _record_deliveries(self, sending: _Sending) -> _Answered:
        """Wait for a chunk's answers, show them to the breaker, and commit its deliveries;
        retries are noted in the plan.

        A transient refusal is never `failed`: it is retried until the push is stale."""
        outcomes = sending.outcomes.result()
        self._breaker.record(outcomes)
        plan, now = sending.plan, self._clock()
        retry_after = plan.retry_after
        deliveries: list[dict] = []
        device_states: dict[str, set[int]] = defaultdict(set)
        for target, outcome in zip(sending.chunk, outcomes, strict=True):
            OUTCOMES.labels(outcome.kind.value, outcome.code or "").inc()
            if outcome.kind is OutcomeKind.RETRY:
                retry_after[target.event_id] = max(
                    retry_after.get(target.event_id, 0.0), outcome.retry_after or 0.0
                )
                device_states["retrying"].add(target.device_id)
                continue
            if outcome.kind is OutcomeKind.OK:
                status = "ok"
                QUEUE_TO_SEND.observe((now - plan.created[target.event_id]).total_seconds())
            elif outcome.kind is OutcomeKind.PRUNE:
                status = "pruned"
                PRUNED.labels(outcome.code or "").inc()
            else:
                status = "failed"
            device_states[status].add(target.device_id)
            deliveries.append(
                {
                    "outbox_id": target.event_id,
                    "device_id": target.device_id,
                    "status": status,
                    "sent_at": now,
                }
            )
        if deliveries:
            with session_scope(self._sessions) as db:
                _insert_ignoring_duplicates(db, deliveries, now)
        return _Answered(plan, device_states, now, sending.last)

    def _settle_events(self, db: Session, plan: _Plan, now: datetime) -> None:
        """Done, or back in the queue (unclaimed) for when it is due again."""
        retry_after, held = plan.retry_after, plan.held
        if plan.expired:
            OUTCOMES.labels("expired", "").inc(len(plan.expired))
            log.warning("%d pushes expired unsent after %s", len(plan.expired), self._stale)
        done = [
            event_id
            for event_id in plan.attempts
            if event_id not in retry_after
            and event_id not in plan.deferred
            and event_id not in held
        ]
        if done:
            db.execute(
                update(OutboxEvent)
                .where(one_of(db, OutboxEvent.id, done))
                .values(done_at=now, claimed_by=None),
                execution_options=_UNLOADED,
            )
        pause = self._breaker.wait_seconds()  # FCM is down: come back for the next probe
        for event_id in set(retry_after) | set(plan.deferred) | held:
            due: list[datetime] = []
            values: dict = {"claimed_by": None}
            if event_id in retry_after:
                # In an outage the breaker alone sets the pace: a push's own backoff,
                # grown through the probes, would hold it back long after FCM recovered.
                delay = pause or backoff_delay(
                    plan.attempts[event_id],
                    retry_after[event_id] or None,
                    base=RETRY_BASE_SECONDS,
                    cap=RETRY_MAX_SECONDS,
                )
                due.append(now + timedelta(seconds=delay))
            else:
                # Waiting out quiet hours or FCM's outage is not a failed attempt.
                values["attempts"] = OutboxEvent.attempts - 1
                if event_id in held:
                    due.append(now + timedelta(seconds=pause))
            if event_id in plan.deferred:
                due.append(plan.deferred[event_id])
            values["available_at"] = min(due)
            db.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(**values))

    # -- upkeep ---------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        """Now and then: drop tokens unrefreshed for 270 days, forget old finished events."""
        if time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
        now = self._clock()
        with session_scope(self._sessions) as db:
            dropped = db.execute(
                update(Device)
                .where(
                    Device.push_token.is_not(None),
                    Device.push_token_updated_at < now - timedelta(days=STALE_TOKEN_DAYS),
                )
                .values(push_token=None, last_push_status="pruned")
            ).rowcount
            db.execute(
                delete(OutboxEvent).where(
                    OutboxEvent.done_at < now - timedelta(days=KEEP_DONE_DAYS)
                )
            )
        if dropped:
            PRUNED.labels("STALE_TOKEN").inc(dropped)
            log.info("dropped %d push tokens not refreshed for %d days", dropped, STALE_TOKEN_DAYS)

    def _update_queue_depth(self, db: Session, *, force: bool) -> None:
        if not force and time.monotonic() < self._next_depth:
            return
        self._next_depth = time.monotonic() + QUEUE_DEPTH_SECONDS
        QUEUE_DEPTH.set(
            db.scalar(select(func.count(OutboxEvent.id)).where(OutboxEvent.done_at.is_(None))) or 0
        )


def _update_device_states(
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
            values: dict = {"last_push_status": status}
            if status != "retrying":
                values["last_push_at"] = now
            if status == "pruned":
                values["push_token"] = None
            db.execute(
                update(Device).where(one_of(db, Device.id, ids)).values(**values),
                execution_options=_UNLOADED,
            )


def _claim(db: Session, limit: int, lease: timedelta, now: datetime, name: str) -> list[Row]:
    """Take up to `limit` due events and lease them to `name`, in one statement.

    `FOR UPDATE SKIP LOCKED` lets dispatchers claim side by side on PostgreSQL; on SQLite
    the single UPDATE takes the write lock at once, so two claims never interleave. On
    PostgreSQL an event whose claimer's session ended is due at once, lease or not.
    """
    due_now = OutboxEvent.available_at <= now
    if db.get_bind().dialect.name == "postgresql":
        due_now = or_(due_now, liveness.orphaned(OutboxEvent.claimed_by))
    due = (
        select(OutboxEvent.id)
        .where(OutboxEvent.done_at.is_(None), due_now)
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


def _served(db: Session, event_ids: list[int]) -> set[tuple[int, int]]:
    """(event, device) pairs already delivered: by a dispatcher whose lease ran out, or
    before the event waited out someone's quiet hours."""
    return set(
        db.execute(
            select(PushDelivery.outbox_id, PushDelivery.device_id).where(
                one_of(db, PushDelivery.outbox_id, event_ids)
            )
        ).all()
    )


def _unread_counts(db: Session, mailbox_ids: set[int]) -> dict[int, int]:
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


def _unread_messages(db: Session, message_ids: list[int]) -> set[int]:
    if not message_ids:
        return set()
    return set(
        db.scalars(
            select(Message.id).where(one_of(db, Message.id, message_ids), Message.seen.is_(False))
        )
    )


def _previews(db: Session, message_ids: list[int]) -> dict[int, dict[str, str]]:
    """Sender and subject of the messages to preview (decrypted from the cache)."""
    messages = db.scalars(select(Message).where(one_of(db, Message.id, message_ids)))
    return {m.id: previews.preview_of(m.sender, m.subject) for m in messages}


def _usable_key(key: bytes | None) -> bool:
    return key is not None and len(key) == previews.KEY_BYTES


def _latest_unread_news(db: Session, mailbox_ids: set[int]) -> dict[int, int]:
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


def _latest_read_per_mailbox(events: list[Row]) -> dict[int, int]:
    latest: dict[int, int] = {}
    for event in events:
        if event.kind == payloads.MAIL_READ:
            latest[event.mailbox_id] = max(latest.get(event.mailbox_id, 0), event.id)
    return latest


def _insert_ignoring_duplicates(db: Session, deliveries: list[dict], sent_at: datetime) -> None:
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
