"""The dispatcher: outbox to FCM, once per device, with FCM's answers acted upon.

firebase-admin runs for real against the local FCM server (devtools/fcm_server.py).
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from backend.push.dispatcher import STALE_TOKEN_DAYS, Dispatcher
from backend.push.fcm import FcmSender
from backend.storage.models import utcnow
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm


def test_new_mail_reaches_every_device_of_every_member_exactly_once(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    doctor, secretary, outsider = world.user(), world.user(), world.user()
    phone, tablet = world.device(doctor, "phone"), world.device(doctor, "tablet")
    desk = world.device(secretary, "desk")
    world.device(outsider, "not-a-member")
    mailbox_id, public_id = world.mailbox(doctor, secretary)
    _message, event_id = world.new_mail(mailbox_id)

    assert dispatcher.drain() == 1
    assert dispatcher.drain() == 0

    requests = fake_fcm.requests
    assert sorted(r.token for r in requests) == ["desk", "phone", "tablet"]
    assert {(r.data["type"], r.data["mailbox"], r.data["unread"]) for r in requests} == {
        ("mail.new", public_id, "1")
    }
    assert sorted(world.deliveries()) == sorted(
        [(event_id, phone, "ok"), (event_id, tablet, "ok"), (event_id, desk, "ok")]
    )
    assert world.event(event_id).done_at is not None
    device = world.device_row(phone)
    assert device.last_push_status == "ok"
    assert device.last_push_at is not None


def test_a_batch_past_500_devices_reaches_each_device_once(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    ward = world.user()
    tokens = world.devices(ward, 1203)
    mailbox_id, _public_id = world.mailbox(ward)
    world.new_mail(mailbox_id)

    dispatcher.drain()

    received = Counter(r.token for r in fake_fcm.wait_for_count(1203, timeout=30))
    assert set(received) == set(tokens)
    assert set(received.values()) == {1}
    assert len(world.deliveries()) == 1203


def test_overlapped_rounds_send_batches_in_outbox_order_each_device_once(
    world: World, services: Any, sender: FcmSender, fake_fcm: FakeFcm
) -> None:
    events: list[int] = []
    for index in range(7):
        user = world.user()
        world.device(user, f"device-{index}")
        mailbox_id, _public_id = world.mailbox(user)
        events.append(world.new_mail(mailbox_id)[1])
    dispatcher = Dispatcher(services.sessions, sender, batch_events=2)

    assert dispatcher.drain() == 7  # four batches, each planned while the last one was sent

    arrival = {r.token: position for position, r in enumerate(fake_fcm.requests)}
    assert len(fake_fcm.requests) == 7
    batches = [[f"device-{i}" for i in range(start, start + 2) if i < 7] for start in (0, 2, 4, 6)]
    for earlier, later in itertools.pairwise(batches):
        assert max(arrival[token] for token in earlier) < min(arrival[token] for token in later)
    assert sorted(event for event, _device, status in world.deliveries()) == events
    assert all(world.event(event).done_at is not None for event in events)


def test_a_batch_slower_than_the_lease_stays_leased_chunk_after_chunk(
    world: World,
    services: Any,
    sender: FcmSender,
    fake_fcm: FakeFcm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ward = world.user()
    tokens = world.devices(ward, 2600)  # six chunks
    mailbox_id, _public_id = world.mailbox(ward)
    world.new_mail(mailbox_id)
    monkeypatch.setattr(fake_fcm, "latency", 0.1)  # a chunk takes about half a second
    slow = Dispatcher(services.sessions, sender, lease_seconds=2.0)  # the batch, about three
    rival = Dispatcher(services.sessions, sender, lease_seconds=2.0)
    slow_handled: list[int] = []
    sending = threading.Thread(target=lambda: slow_handled.append(slow.drain()))
    sending.start()
    fake_fcm.wait_for_count(1, timeout=10)  # the batch is claimed and on its way

    rival_handled = []
    while sending.is_alive():  # a rival dispatcher, trying to claim every 50 ms
        rival_handled.append(rival.drain())
        sending.join(timeout=0.05)

    assert slow_handled == [1]
    assert sum(rival_handled) == 0  # the event stayed leased to the slow dispatcher
    received = Counter(r.token for r in fake_fcm.requests)
    assert set(received) == set(tokens)
    assert set(received.values()) == {1}


def test_a_push_recorded_by_a_dispatcher_that_took_over_keeps_its_first_record(
    world: World, services: Any, sender: FcmSender, fake_fcm: FakeFcm
) -> None:
    """The lease ran out while the first dispatcher's push was on its way: a second one
    sent and recorded it too. The first record stays; the late one is dropped, not an error."""
    ward = world.user()
    phone = world.device(ward, "phone")
    mailbox_id, _public_id = world.mailbox(ward)
    _message, event_id = world.new_mail(mailbox_id)
    taker = Dispatcher(services.sessions, sender)
    taken: list[int] = []

    class OvertakenSender:
        """Lets the taker claim, send and record the whole event before answering."""

        def submit(self, messages):
            taken.append(taker.drain())
            return sender.submit(messages)

    late = Dispatcher(services.sessions, OvertakenSender(), lease_seconds=0)
    assert late.drain() == 1

    assert taken == [1]
    assert [r.token for r in fake_fcm.requests] == ["phone", "phone"]  # the known window
    assert world.deliveries() == [(event_id, phone, "ok")]
    assert world.event(event_id).done_at is not None


@pytest.mark.parametrize(
    ("kind", "status", "token_kept", "delivery"),
    [
        ("unregistered", "pruned", False, "pruned"),
        ("invalid_token", "pruned", False, "pruned"),
        ("invalid_payload", "failed", True, "failed"),
        ("sender_id_mismatch", "failed", True, "failed"),
        ("third_party_auth", "failed", True, "failed"),
        ("quota", "retrying", True, None),
        ("unavailable", "retrying", True, None),
        ("internal", "retrying", True, None),
    ],
)
def test_each_fcm_error_code_has_its_effect_on_the_token(
    world: World,
    dispatcher: Dispatcher,
    fake_fcm: FakeFcm,
    kind: str,
    status: str,
    token_kept: bool,
    delivery: str | None,
) -> None:
    user = world.user()
    healthy, doomed = world.device(user, "healthy"), world.device(user, "doomed")
    mailbox_id, _public_id = world.mailbox(user)
    _message, event_id = world.new_mail(mailbox_id)
    fake_fcm.fail("doomed", kind)

    dispatcher.drain()

    device = world.device_row(doomed)
    assert device.last_push_status == status
    assert (device.push_token == "doomed") is token_kept
    assert world.device_row(healthy).last_push_status == "ok"
    recorded = {device_id: s for _event, device_id, s in world.deliveries()}
    assert recorded.get(doomed) == delivery
    assert recorded[healthy] == "ok"
    # A retry keeps the event; anything else settles it.
    assert (world.event(event_id).done_at is None) is (status == "retrying")


def test_retry_after_is_honoured_and_only_the_failed_device_is_sent_again(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    user = world.user()
    world.device(user, "healthy")
    flaky = world.device(user, "flaky")
    mailbox_id, _public_id = world.mailbox(user)
    _message, event_id = world.new_mail(mailbox_id)
    fake_fcm.fail("flaky", "quota", times=1, retry_after=120)

    before = utcnow()
    dispatcher.drain()

    event = world.event(event_id)
    assert event.done_at is None
    assert event.available_at >= before + timedelta(seconds=120)
    assert dispatcher.drain() == 0  # not due yet: FCM asked for two minutes

    world.make_due()  # two minutes later
    dispatcher.drain()

    assert [(r.token, r.status) for r in fake_fcm.requests] in (
        [("healthy", 200), ("flaky", 429), ("flaky", 200)],
        [("flaky", 429), ("healthy", 200), ("flaky", 200)],
    )
    assert world.device_row(flaky).last_push_status == "ok"
    assert world.event(event_id).done_at is not None


def test_without_retry_after_the_backoff_grows_exponentially(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    user = world.user()
    world.device(user, "flaky")
    mailbox_id, _public_id = world.mailbox(user)
    _message, event_id = world.new_mail(mailbox_id)
    fake_fcm.fail("flaky", "unavailable")

    delays = []
    for _ in range(3):
        started = utcnow()
        dispatcher.drain()
        delays.append((world.event(event_id).available_at - started).total_seconds())
        world.make_due()

    # Equal jitter: between half and all of 2, 4, then 8 seconds.
    assert 1 <= delays[0] < 3 and 2 <= delays[1] < 5 and 4 <= delays[2] < 9


def test_tokens_not_refreshed_for_270_days_are_dropped(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    user = world.user()
    old = world.device(user, "old", token_age=timedelta(days=STALE_TOKEN_DAYS, hours=1))
    world.device(user, "recent", token_age=timedelta(days=STALE_TOKEN_DAYS - 1))
    mailbox_id, _public_id = world.mailbox(user)
    world.new_mail(mailbox_id)

    dispatcher.drain()

    assert [r.token for r in fake_fcm.requests] == ["recent"]
    device = world.device_row(old)
    assert device.push_token is None
    assert device.last_push_status == "pruned"


def test_mail_read_elsewhere_clears_the_notification_on_every_device(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    doctor, secretary = world.user(), world.user()
    world.device(doctor, "phone")
    world.device(secretary, "desk")
    mailbox_id, public_id = world.mailbox(doctor, secretary)
    first, _ = world.new_mail(mailbox_id)
    second, _ = world.new_mail(mailbox_id)
    dispatcher.drain()
    fake_fcm.reset()

    world.read(mailbox_id, first)
    world.read(mailbox_id, second)
    dispatcher.drain()

    requests = fake_fcm.requests
    # Two reads in a row: one silent push per device, with the count as it is now.
    assert sorted(r.token for r in requests) == ["desk", "phone"]
    assert {(r.data["type"], r.data["mailbox"], r.data["unread"]) for r in requests} == {
        ("mail.read", public_id, "0")
    }
    assert {r.message["apns"]["headers"]["apns-push-type"] for r in requests} == {"background"}


def test_a_message_read_before_its_push_went_out_does_not_ring(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    user = world.user()
    world.device(user, "phone")
    mailbox_id, _public_id = world.mailbox(user)
    message_id, new_event = world.new_mail(mailbox_id)
    world.read(mailbox_id, message_id)

    dispatcher.drain()

    assert [r.data["type"] for r in fake_fcm.requests] == ["mail.read"]
    assert world.event(new_event).done_at is not None


def test_metrics_count_outcomes_by_fcm_code_pruned_tokens_latency_and_queue_depth(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "ok": sample("estafette_push_fcm_outcomes_total", outcome="ok", code=""),
        "dead": sample("estafette_push_fcm_outcomes_total", outcome="prune", code="UNREGISTERED"),
        "pruned": sample("estafette_push_pruned_tokens_total", code="UNREGISTERED"),
        "batches": sample("estafette_push_send_seconds_count"),
    }
    user = world.user()
    world.device(user, "alive")
    world.device(user, "dead")
    mailbox_id, _public_id = world.mailbox(user)
    world.new_mail(mailbox_id)
    fake_fcm.fail("dead", "unregistered")

    dispatcher.drain()

    assert sample("estafette_push_fcm_outcomes_total", outcome="ok", code="") == before["ok"] + 1
    assert (
        sample("estafette_push_fcm_outcomes_total", outcome="prune", code="UNREGISTERED")
        == before["dead"] + 1
    )
    assert sample("estafette_push_pruned_tokens_total", code="UNREGISTERED") == before["pruned"] + 1
    assert sample("estafette_push_send_seconds_count") == before["batches"] + 1
    assert sample("estafette_push_queue_depth") == 0
