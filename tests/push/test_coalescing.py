"""A burst of mail into one mailbox is a few pushes per device, the last with the count."""

from __future__ import annotations

from collections import Counter
from typing import Any

from backend.push.dispatcher import Dispatcher
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm


def test_a_burst_queued_at_once_is_one_push_per_device_with_the_latest_count(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    user = world.user()
    tokens = world.devices(user, 3)
    mailbox_id, public_id = world.mailbox(user)
    for _ in range(60):
        world.new_mail(mailbox_id)

    dispatcher.drain()

    pushes = Counter(r.token for r in fake_fcm.requests)
    assert pushes == dict.fromkeys(tokens, 1)
    assert {r.data["unread"] for r in fake_fcm.requests} == {"60"}
    assert {r.message["android"]["collapse_key"] for r in fake_fcm.requests} == {public_id}


def test_a_burst_larger_than_a_batch_is_still_one_push_per_device(
    services: Any, world: World, sender: Any, fake_fcm: FakeFcm
) -> None:
    dispatcher = Dispatcher(services.sessions, sender, batch_events=25)
    user = world.user()
    token = world.devices(user, 1)[0]
    mailbox_id, _public_id = world.mailbox(user)
    for _ in range(100):
        world.new_mail(mailbox_id)

    dispatcher.drain()

    assert [(r.token, r.data["unread"]) for r in fake_fcm.requests] == [(token, "100")]


def test_urgent_mail_is_not_folded_into_an_ordinary_push(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    night = (0, 24 * 60 - 1, "UTC")  # always in quiet hours
    user = world.user(quiet=night)
    world.device(user, "phone")
    mailbox_id, _public_id = world.mailbox(user)
    world.new_mail(mailbox_id, urgent=True)
    world.new_mail(mailbox_id)  # newer, but must wait for the end of quiet hours

    dispatcher.drain()

    assert [(r.token, r.data["unread"]) for r in fake_fcm.requests] == [("phone", "2")]


def test_each_mailbox_of_a_burst_gets_its_own_push(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    user = world.user()
    world.device(user, "phone")
    first, first_public = world.mailbox(user)
    second, second_public = world.mailbox(user)
    for _ in range(5):
        world.new_mail(first)
        world.new_mail(second)

    dispatcher.drain()

    assert sorted(r.data["mailbox"] for r in fake_fcm.requests) == sorted(
        [first_public, second_public]
    )
