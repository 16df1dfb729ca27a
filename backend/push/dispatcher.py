"""The push dispatcher: drains the outbox into FCM, one delivery per (event, device).

Several dispatchers may run at once: each claims events with `FOR UPDATE SKIP LOCKED`
(PostgreSQL) and leases them for `CLAIM_SECONDS`, so a dispatcher that dies mid-batch
leaves its events to the others once the lease runs out. A `push_deliveries` row per
(event, device) is the record of what was sent, so a resumed event skips devices already
served: nothing is lost, and nothing is sent twice to a device.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.metrics import PUSH_OUTCOMES as OUTCOMES
from backend.metrics import PUSH_PRUNED as PRUNED
from backend.metrics import PUSH_QUEUE_DEPTH as QUEUE_DEPTH
from backend.metrics import PUSH_QUEUE_TO_SEND as QUEUE_TO_SEND
from backend.metrics import PUSH_SEND_LATENCY as SEND_LATENCY
from backend.push import payloads
from backend.push.fcm import Sender
from backend.push.outcomes import OutcomeKind
from backend.storage.database import session_scope
from backend.storage.models import (
    Device,
    Folder,
    Mailbox,
    Membership,
    Message,
    OutboxEvent,
    PushDelivery,
    utcnow,
)

log = logging.getLogger("estafette.push")

CLAIM_SECONDS = 60
BATCH_EVENTS = 500
MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 2.0


@dataclass(frozen=True)
class _Target:
    event_id: int
    device_id: int
    message: object


def _unread(db: Session, mailbox_id: int) -> int:
    return (
        db.scalar(
            select(func.count(Message.id))
            .join(Folder, Folder.id == Message.folder_id)
            .where(
                Message.mailbox_id == mailbox_id, Folder.name == "INBOX", Message.seen.is_(False)
            )
        )
        or 0
    )


def _claim(db: Session, limit: int) -> list[OutboxEvent]:
    now = utcnow()
    events = list(
        db.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.done_at.is_(None), OutboxEvent.available_at <= now)
            .order_by(OutboxEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for event in events:
        event.available_at = now + timedelta(seconds=CLAIM_SECONDS)
        event.attempts += 1
    return events


def _targets(db: Session, events: list[OutboxEvent]) -> list[_Target]:
    """Every (event, device) still owed a push: members' devices with a live token."""
    mailbox_ids = {e.mailbox_id for e in events}
    devices_by_mailbox: dict[int, list[Device]] = {}
    for mailbox_id, device in db.execute(
        select(Membership.mailbox_id, Device)
        .join(Device, Device.user_id == Membership.user_id)
        .where(
            Membership.mailbox_id.in_(mailbox_ids),
            Device.revoked_at.is_(None),
            Device.push_token.is_not(None),
        )
    ).all():
        devices_by_mailbox.setdefault(mailbox_id, []).append(device)
    served = set(
        db.execute(
            select(PushDelivery.outbox_id, PushDelivery.device_id).where(
                PushDelivery.outbox_id.in_([e.id for e in events])
            )
        ).all()
    )
    public_ids = dict(
        db.execute(select(Mailbox.id, Mailbox.public_id).where(Mailbox.id.in_(mailbox_ids))).all()
    )
    unread = {mailbox_id: _unread(db, mailbox_id) for mailbox_id in mailbox_ids}
    targets = []
    for event in events:
        build = payloads.new_mail if event.kind == payloads.NEW_MAIL else payloads.mail_read
        for device in devices_by_mailbox.get(event.mailbox_id, []):
            if (event.id, device.id) in served:
                continue
            message = build(
                device.push_token, public_ids[event.mailbox_id], unread[event.mailbox_id]
            )
            targets.append(_Target(event.id, device.id, message))
    return targets


class Dispatcher:
    """Claims outbox events, fans them out to devices, sends, and records each outcome."""

    def __init__(
        self, sessions: sessionmaker[Session], sender: Sender, *, batch_events: int = BATCH_EVENTS
    ) -> None:
        self._sessions = sessions
        self._sender = sender
        self._batch = batch_events

    def run(self, stop: threading.Event, idle_wait: float = 0.05) -> None:
        """Drain until `stop` is set; poll gently when the outbox is empty."""
        log.info("push dispatcher starting")
        while not stop.is_set():
            try:
                worked = self.dispatch_once()
            except Exception:
                log.exception("dispatch failed; retrying")
                worked = 0
            if not worked:
                stop.wait(idle_wait)
        log.info("push dispatcher stopped")

    def dispatch_once(self) -> int:
        """One claim-send-record round; returns how many events it handled."""
        with session_scope(self._sessions) as db:
            events = _claim(db, self._batch)
            if not events:
                QUEUE_DEPTH.set(0)
                return 0
            created = {e.id: e.created_at for e in events}
            targets = _targets(db, events)
        started = time.monotonic()
        outcomes = self._sender.send([t.message for t in targets]) if targets else []
        SEND_LATENCY.observe(time.monotonic() - started)
        self._record(events_ids=list(created), targets=targets, outcomes=outcomes, created=created)
        return len(created)

    def _record(
        self, *, events_ids: list[int], targets: list[_Target], outcomes: list, created: dict
    ) -> None:
        now = utcnow()
        retry_events: dict[int, float] = {}
        with session_scope(self._sessions) as db:
            for target, outcome in zip(targets, outcomes, strict=True):
                OUTCOMES.labels(outcome.kind.value, outcome.code or "").inc()
                device = db.get(Device, target.device_id)
                if outcome.kind is OutcomeKind.RETRY:
                    # FCM's Retry-After wins; without one, exponential backoff below.
                    retry_events[target.event_id] = max(
                        retry_events.get(target.event_id, 0.0), outcome.retry_after or 0.0
                    )
                    if device is not None:
                        device.last_push_status = "retrying"
                    continue
                db.add(
                    PushDelivery(
                        outbox_id=target.event_id,
                        device_id=target.device_id,
                        status=outcome.kind.value,
                        sent_at=now,
                    )
                )
                if device is None:
                    continue
                device.last_push_at = now
                if outcome.kind is OutcomeKind.OK:
                    device.last_push_status = "ok"
                    QUEUE_TO_SEND.observe((now - created[target.event_id]).total_seconds())
                elif outcome.kind is OutcomeKind.PRUNE:
                    device.last_push_status = "pruned"
                    device.push_token = None
                    PRUNED.inc()
                else:
                    device.last_push_status = "failed"
            for event_id in events_ids:
                event = db.get(OutboxEvent, event_id)
                if event_id in retry_events and event.attempts < MAX_ATTEMPTS:
                    delay = retry_events[event_id] or RETRY_BASE_SECONDS * 2 ** (event.attempts - 1)
                    event.available_at = now + timedelta(seconds=delay)
                else:
                    event.done_at = now
            pending = db.scalar(
                select(func.count(OutboxEvent.id)).where(OutboxEvent.done_at.is_(None))
            )
            QUEUE_DEPTH.set(pending or 0)
