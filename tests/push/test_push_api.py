"""The app's side of push: notification settings, and the push status of each device."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from backend.push.dispatcher import Dispatcher
from backend.storage.models import User
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm
from tests.factories import create_user
from tests.support import Authenticator, bearer, body

SETTINGS = "/api/v1/me/notifications"


@pytest.fixture
def signed_in(client, services) -> tuple[str, dict]:
    username = create_user(services)
    session = Authenticator().sign_in(
        client, username, device={"name": "Pixel", "platform": "android", "push_token": "tok-1"}
    )
    return username, bearer(session["access_token"])


def _user_id(services, username: str) -> int:
    with services.sessions() as db:
        return db.scalar(select(User.id).where(User.username == username))


def test_notification_settings_default_to_no_quiet_hours_and_not_on_call(client, signed_in) -> None:
    _username, headers = signed_in

    answer = client.get(SETTINGS, headers=headers)

    assert answer.status_code == 200
    assert body(answer) == {"quiet_hours": None, "on_call": False}


def test_quiet_hours_and_on_call_are_stored_and_read_back(client, services, signed_in) -> None:
    username, headers = signed_in
    settings = {
        "quiet_hours": {"start": "22:00", "end": "07:30", "timezone": "Europe/Paris"},
        "on_call": True,
    }

    put = client.put(SETTINGS, headers=headers, json=settings)

    assert put.status_code == 200
    assert body(put) == settings
    assert body(client.get(SETTINGS, headers=headers)) == settings
    with services.sessions() as db:
        user = db.scalar(select(User).where(User.username == username))
        assert (user.quiet_start_minute, user.quiet_end_minute) == (22 * 60, 7 * 60 + 30)

    cleared = client.put(SETTINGS, headers=headers, json={"quiet_hours": None, "on_call": False})
    assert body(cleared) == {"quiet_hours": None, "on_call": False}


@pytest.mark.parametrize(
    ("quiet_hours", "field"),
    [
        ({"start": "25:00", "end": "07:00", "timezone": "Europe/Paris"}, "start"),
        ({"start": "22:00", "end": "7h", "timezone": "Europe/Paris"}, "end"),
        ({"start": "22:00", "end": "07:00", "timezone": "Europe/Lutece"}, "timezone"),
    ],
)
def test_bad_quiet_hours_are_refused_with_a_problem(
    client, signed_in, quiet_hours: dict, field: str
) -> None:
    _username, headers = signed_in

    answer = client.put(SETTINGS, headers=headers, json={"quiet_hours": quiet_hours, "on_call": 0})

    assert answer.status_code == 422
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert field in str(body(answer))


def test_settings_need_a_session(client) -> None:
    assert client.get(SETTINGS).status_code == 401


def test_get_devices_shows_when_the_last_push_went_and_how_it_ended(
    client, services, signed_in, sender, fake_fcm: FakeFcm
) -> None:
    username, headers = signed_in
    world = World(services)
    mailbox_id, _public_id = world.mailbox(_user_id(services, username))
    world.new_mail(mailbox_id)
    before = body(client.get("/api/v1/devices", headers=headers))
    assert [(d["last_push_at"], d["last_push_status"]) for d in before] == [(None, None)]

    fake_fcm.fail("tok-1", "unregistered")
    Dispatcher(services.sessions, sender).drain()

    [device] = body(client.get("/api/v1/devices", headers=headers))
    assert device["last_push_status"] == "pruned"
    assert device["last_push_at"] is not None
    assert device["has_push_token"] is False  # the app must register its token again
