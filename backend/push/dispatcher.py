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
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from firebase_admin import messaging
from sqlalchemy import Row
from sqlalchemy.orm import Session, sessionmaker

from backend.metrics import PUSH_OUTCOMES as OUTCOMES
from backend.metrics import PUSH_PRUNED as PRUNED
from backend.metrics import PUSH_QUEUE_DEPTH as QUEUE_DEPTH
from backend.metrics import PUSH_QUEUE_TO_SEND as QUEUE_TO_SEND
from backend.metrics import PUSH_SENT as SENT
from backend.push import outbox_queries as queries
from backend.push import payloads, previews
from backend.push.breaker import Breaker, backoff_delay
from backend.push.fcm import Sender
from backend.push.outcomes import DEVICE_STATUS, Outcome, OutcomeKind
from backend.push.quiet_hours import quiet_hours_of
from backend.push.wakeup import OutboxWakeup
from backend.storage import liveness
from backend.storage.database import session_scope
from backend.storage.models import utcnow
from backend.storage.outage import DatabaseOutage, is_database_outage

log = logging.getLogger("estafette.push")

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
    platform: str = "fcm"  # or "webpush": the push service, for the outcome counter


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
    expired_on: Counter[str] = field(default_factory=Counter)  # platform -> expired pushes
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
        outage = DatabaseOutage(log, "pushes wait")
        try:
            while not stop.is_set():
                try:
                    worked = self.drain(stop)
                except Exception as exc:
                    if is_database_outage(exc):
                        outage.failed(exc)  # one line for the whole outage
                    else:
                        log.exception("dispatch failed; retrying")
                    stop.wait(ERROR_WAIT_SECONDS)
                    continue
                outage.answered()
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
                busy = frozenset(plan.attempts)  # its last chunk may still be on the wire
                plan = self._next_plan(busy) if self._breaker.allowance() != 0 else None
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

    def _next_plan(self, busy: frozenset[int] = frozenset()) -> _Plan | None:
        """Claim a batch of due events (none of `busy`, still ours on the wire) and plan it;
        None when nothing is due."""
        self._housekeeping()
        if self._postgres:
            liveness.hold(self._engine, self.name)  # before a claim can name us
        with session_scope(self._sessions) as db:
            events = queries.claim(db, self._batch, self._lease, self._clock(), self.name, busy)
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
            queries.extend_lease(db, plan.attempts, self._clock() + self._lease)

    def _conclude(self, answered: _Answered) -> None:
        """The device states of a recorded chunk; after the plan's last, settle its events."""
        queries.update_device_states(self._sessions, answered.device_states, answered.at)
        if answered.last:
            self._settle(answered.plan)

    def _settle(self, plan: _Plan) -> None:
        now = self._clock()
        with session_scope(self._sessions) as db:
            if plan.expired:
                queries.insert_deliveries(
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
        recipients, public_ids = queries.recipients(
            db, mailbox_ids, now - timedelta(days=STALE_TOKEN_DAYS), with_keys=self._previews
        )
        served = queries.served(db, [e.id for e in events])
        unread = queries.unread_counts(db, mailbox_ids)
        news = [e for e in events if e.kind == payloads.NEW_MAIL]
        pending = queries.unread_messages(
            db, [e.message_id for e in news if e.message_id is not None]
        )
        wants_previews = self._previews and any(
            r.push_key for e in news for r in recipients.get(e.mailbox_id, ())
        )
        shown = queries.previews_of(db, list(pending)) if wants_previews else {}
        latest_read = _latest_read_per_mailbox(events)
        latest_new = queries.latest_unread_news(db, mailbox_ids)

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
            if event.kind == payloads.MAIL_READ and latest_read[event.mailbox_id] != event.id:
                continue  # a newer mail.read in this batch carries the same news
            stale = now - event.created_at > self._stale
            for recipient in recipients.get(event.mailbox_id, ()):
                if (event.id, recipient.device_id) in served:
                    continue
                if event.kind == payloads.AUTH_REQUIRED and not recipient.owner:
                    continue  # a delegate cannot sign in for the owner
                web = payloads.is_web_push(recipient.token)
                if stale:
                    plan.expired.append((event.id, recipient.device_id))
                    plan.expired_on[_platform(web)] += 1
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
                    message = payloads.new_mail(
                        recipient.token, mailbox, count, sealed, urgent=event.urgent, web=web
                    )
                elif event.kind == payloads.AUTH_REQUIRED:
                    message = payloads.auth_required(recipient.token, web=web)
                else:
                    message = payloads.mail_read(recipient.token, mailbox, count, web=web)
                plan.targets.append(_Target(event.id, recipient.device_id, message, _platform(web)))
        return plan

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
            SENT.labels(outcome.kind.value, target.platform).inc()
            if outcome.kind is OutcomeKind.RETRY:
                retry_after[target.event_id] = max(
                    retry_after.get(target.event_id, 0.0), outcome.retry_after or 0.0
                )
                device_states["retrying"].add(target.device_id)
                continue
            status = DEVICE_STATUS[outcome.kind]
            if outcome.kind is OutcomeKind.OK:
                QUEUE_TO_SEND.observe((now - plan.created[target.event_id]).total_seconds())
            elif outcome.kind is OutcomeKind.PRUNE:
                PRUNED.labels(outcome.code or "").inc()
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
                queries.insert_deliveries(db, deliveries, now)
        return _Answered(plan, device_states, now, sending.last)

    def _settle_events(self, db: Session, plan: _Plan, now: datetime) -> None:
        """Done, or back in the queue (unclaimed) for when it is due again."""
        retry_after, held = plan.retry_after, plan.held
        if plan.expired:
            OUTCOMES.labels("expired", "").inc(len(plan.expired))
            for platform, count in plan.expired_on.items():
                SENT.labels("expired", platform).inc(count)
            log.warning("%d pushes expired unsent after %s", len(plan.expired), self._stale)
        done = [
            event_id
            for event_id in plan.attempts
            if event_id not in retry_after
            and event_id not in plan.deferred
            and event_id not in held
        ]
        queries.mark_done(db, done, now)
        pause = self._breaker.wait_seconds()  # FCM is down: come back for the next probe
        for event_id in set(retry_after) | set(plan.deferred) | held:
            due: list[datetime] = []
            attempt_counts = True
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
                attempt_counts = False  # waiting out quiet hours or FCM's outage
                if event_id in held:
                    due.append(now + timedelta(seconds=pause))
            if event_id in plan.deferred:
                due.append(plan.deferred[event_id])
            queries.requeue(db, event_id, min(due), attempt_counts=attempt_counts)

    # -- upkeep ---------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        """Now and then: drop tokens unrefreshed for 270 days, forget old finished events."""
        if time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
        now = self._clock()
        with session_scope(self._sessions) as db:
            dropped = queries.drop_tokens_unrefreshed_since(
                db, now - timedelta(days=STALE_TOKEN_DAYS)
            )
            queries.forget_done_before(db, now - timedelta(days=KEEP_DONE_DAYS))
        if dropped:
            PRUNED.labels("STALE_TOKEN").inc(dropped)
            log.info("dropped %d push tokens not refreshed for %d days", dropped, STALE_TOKEN_DAYS)

    def _update_queue_depth(self, db: Session, *, force: bool) -> None:
        if not force and time.monotonic() < self._next_depth:
            return
        self._next_depth = time.monotonic() + QUEUE_DEPTH_SECONDS
        QUEUE_DEPTH.set(queries.queue_depth(db))


def _platform(web: bool) -> str:
    return "webpush" if web else "fcm"


def _usable_key(key: bytes | None) -> bool:
    return key is not None and len(key) == previews.KEY_BYTES


def _latest_read_per_mailbox(events: list[Row]) -> dict[int, int]:
    latest: dict[int, int] = {}
    for event in events:
        if event.kind == payloads.MAIL_READ:
            latest[event.mailbox_id] = max(latest.get(event.mailbox_id, 0), event.id)
    return latest
