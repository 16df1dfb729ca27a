"""Quiet hours: pushes wait until they end, unless the user is on call or the mail is urgent."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from backend.push.dispatcher import Dispatcher
from backend.push.quiet_hours import QuietHours
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm

PARIS = "Europe/Paris"


def _quiet_now(zone: str = PARIS) -> tuple[int, int, str]:
    """Quiet hours from an hour ago to an hour from now, local time."""
    local = datetime.now(ZoneInfo(zone))
    minute = local.hour * 60 + local.minute
    return ((minute - 60) % 1440, (minute + 60) % 1440, zone)


def _not_quiet_now(zone: str = PARIS) -> tuple[int, int, str]:
    local = datetime.now(ZoneInfo(zone))
    minute = local.hour * 60 + local.minute
    return ((minute + 60) % 1440, (minute + 120) % 1440, zone)


def test_a_push_waits_out_the_users_quiet_hours(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    resting, awake = world.user(quiet=_quiet_now()), world.user(quiet=_not_quiet_now())
    world.device(resting, "resting-phone")
    world.device(awake, "awake-phone")
    mailbox_id, _public_id = world.mailbox(resting, awake)
    _message, event_id = world.new_mail(mailbox_id)

    dispatcher.drain()

    assert [r.token for r in fake_fcm.requests] == ["awake-phone"]
    event = world.event(event_id)
    assert event.done_at is None
    quiet = QuietHours(*_quiet_now())
    assert event.available_at == quiet.ends_after(datetime.now(UTC))
    assert event.attempts == 0  # waiting is not a failed attempt

    assert dispatcher.drain() == 0  # nothing is due before the quiet hours end

    # The quiet hours are over: the clock passes their end (the window moves past now).
    world.set_quiet(resting, _not_quiet_now())
    world.make_due()
    dispatcher.drain()

    assert [r.token for r in fake_fcm.requests] == ["awake-phone", "resting-phone"]
    assert world.event(event_id).done_at is not None


def test_on_call_overrides_quiet_hours(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    on_call = world.user(quiet=_quiet_now(), on_call=True)
    world.device(on_call, "on-call-phone")
    mailbox_id, _public_id = world.mailbox(on_call)
    world.new_mail(mailbox_id)

    dispatcher.drain()

    assert [r.token for r in fake_fcm.requests] == ["on-call-phone"]


def test_an_urgent_message_rings_at_once_even_in_quiet_hours(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    resting = world.user(quiet=_quiet_now())
    world.device(resting, "resting-phone")
    mailbox_id, _public_id = world.mailbox(resting)
    _message, event_id = world.new_mail(mailbox_id, urgent=True)

    dispatcher.drain()

    assert [r.token for r in fake_fcm.requests] == ["resting-phone"]
    assert world.event(event_id).done_at is not None


def test_mail_read_clears_even_in_quiet_hours_and_the_waiting_push_never_rings(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    resting = world.user(quiet=_quiet_now())
    world.device(resting, "resting-phone")
    mailbox_id, _public_id = world.mailbox(resting)
    message_id, _event = world.new_mail(mailbox_id)
    dispatcher.drain()

    world.read(mailbox_id, message_id)  # read on the desktop during the night
    dispatcher.drain()
    world.set_quiet(resting, _not_quiet_now())  # morning
    world.make_due()
    dispatcher.drain()

    assert [r.data["type"] for r in fake_fcm.requests] == ["mail.read"]


@pytest.mark.parametrize(
    ("now", "expected_end"),
    [
        # 22:00-07:00 in Paris (UTC+1 in winter): 23:30 local is quiet until 07:00 local.
        (datetime(2026, 1, 15, 22, 30, tzinfo=UTC), datetime(2026, 1, 16, 6, 0, tzinfo=UTC)),
        # 03:00 local: still the same night.
        (datetime(2026, 1, 16, 2, 0, tzinfo=UTC), datetime(2026, 1, 16, 6, 0, tzinfo=UTC)),
        # 12:00 local: not quiet.
        (datetime(2026, 1, 16, 11, 0, tzinfo=UTC), None),
        # The night clocks go forward (29 March 2026): 07:00 local is then 05:00 UTC.
        (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 5, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_across_midnight_and_daylight_saving(
    now: datetime, expected_end: datetime | None
) -> None:
    night = QuietHours(22 * 60, 7 * 60, PARIS)

    assert night.ends_after(now) == expected_end


def test_quiet_hours_refuse_an_unknown_zone_or_minute() -> None:
    with pytest.raises(KeyError):
        QuietHours(0, 60, "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="minutes"):
        QuietHours(0, 1440, PARIS)
