"""An FCM incident delays pushes; it never loses them, and never marks them failed.

The dispatcher and its breaker run on a clock of the test's own, so a ten-minute outage
takes a few seconds. FCM is the local server, answering 500/503 to everything meanwhile.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from backend.push.breaker import JITTER, MAX_SECONDS, PROBE_SIZE, Breaker
from backend.push.dispatcher import Dispatcher
from backend.push.fcm import FcmSender
from backend.storage.models import OutboxEvent, utcnow
from devtools.drills.push_harness import Clock
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm


def _pending(services: Any) -> int:
    with services.sessions() as db:
        return db.scalar(select(func.count()).where(OutboxEvent.done_at.is_(None))) or 0


def test_a_push_refused_transiently_is_retried_until_stale_then_expired_never_failed(
    services: Any, world: World, sender: FcmSender, fake_fcm: FakeFcm
) -> None:
    clock = Clock()
    dispatcher = Dispatcher(services.sessions, sender, clock=clock, stale_seconds=600)
    user = world.user()
    stuck = world.device(user, "stuck")
    mailbox_id, _public_id = world.mailbox(user)
    _message, event_id = world.new_mail(mailbox_id)
    fake_fcm.fail("stuck", "internal")

    while _pending(services) and clock.now < utcnow() + timedelta(hours=1):
        dispatcher.drain()
        clock.advance(5)

    assert len(fake_fcm.requests) > 8  # more than the count that used to give up
    assert world.deliveries() == [(event_id, stuck, "expired")]
    assert world.device_row(stuck).last_push_status == "retrying"


def test_a_ten_minute_outage_loses_no_push_and_costs_few_requests(
    services: Any, world: World, sender: FcmSender, fake_fcm: FakeFcm
) -> None:
    clock = Clock()
    dispatcher = Dispatcher(services.sessions, sender, clock=clock)
    user = world.user()
    tokens = world.devices(user, 30)
    public_ids = []
    fake_fcm.fail_all("unavailable")
    for _ in range(5):
        mailbox_id, public_id = world.mailbox(user)
        world.new_mail(mailbox_id)
        public_ids.append(public_id)
    owed = {(public_id, token) for public_id in public_ids for token in tokens}

    outage_ends = clock.now + timedelta(minutes=10)
    while clock.now < outage_ends:
        dispatcher.drain()
        clock.advance(1)
    during = len(fake_fcm.requests)
    fake_fcm.fail_all(None)
    healed = clock.now
    deadline = clock.now + timedelta(minutes=5)
    while _pending(services) and clock.now < deadline:
        dispatcher.drain()
        clock.advance(1)
    # Back at the first probe after FCM is: the breaker sets the pace, not each push's
    # own backoff grown through ten minutes of probes.
    assert (clock.now - healed).total_seconds() <= MAX_SECONDS * (1 + JITTER) + 2

    accepted = Counter((r.data["mailbox"], r.token) for r in fake_fcm.requests if r.status == 200)
    assert set(accepted) == owed  # lost == 0
    assert max(accepted.values()) == 1
    assert {status for _e, _d, status in world.deliveries()} == {"ok"}
    # The breaker, not each push, paid for the outage: the first refusals, then probes
    # (at least ten seconds apart on average).
    assert during <= len(owed) + PROBE_SIZE * 60


def test_the_breaker_waits_out_retry_after(
    services: Any, world: World, sender: FcmSender, fake_fcm: FakeFcm
) -> None:
    user = world.user()
    world.devices(user, 20)
    mailbox_id, _public_id = world.mailbox(user)
    world.new_mail(mailbox_id)
    fake_fcm.fail_all("unavailable", retry_after=90)
    clock = Clock()  # after the mail was queued: it is due at once
    dispatcher = Dispatcher(services.sessions, sender, clock=clock)

    dispatcher.drain()
    refused = len(fake_fcm.requests)
    assert refused == 20
    for _ in range(89):
        clock.advance(1)
        dispatcher.drain()
    assert len(fake_fcm.requests) == refused  # nothing before FCM's Retry-After
    fake_fcm.fail_all(None)
    clock.advance(20)
    dispatcher.drain()
    assert _pending(services) == 0


def test_in_an_outage_a_refused_push_comes_back_with_the_next_probe_not_later(
    services: Any, world: World, sender: FcmSender, fake_fcm: FakeFcm
) -> None:
    user = world.user()
    world.devices(user, 30)
    mailbox_id, _public_id = world.mailbox(user)
    _message, event_id = world.new_mail(mailbox_id)
    fake_fcm.fail_all("internal")
    clock = Clock()
    breaker = Breaker(clock=lambda: clock().timestamp())
    dispatcher = Dispatcher(services.sessions, sender, clock=clock, breaker=breaker)

    for _ in range(8):  # eight failed probes: a push's own backoff would be at its cap
        dispatcher.drain()
        clock.now = datetime.fromtimestamp(breaker.resume_at, UTC)

    dispatcher.drain()  # one more failed probe
    next_probe = datetime.fromtimestamp(breaker.resume_at, UTC)
    assert world.event(event_id).available_at <= next_probe + timedelta(milliseconds=1)
