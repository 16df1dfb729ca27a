"""Encrypted previews: sender and subject sealed for one device, ciphertext for Google."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select

from backend.push import previews
from backend.push.dispatcher import Dispatcher
from backend.push.fcm import FcmSender
from backend.storage.models import Device, User
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm
from tests.factories import create_user
from tests.support import Authenticator, body

SUBJECT = "Résultats IRM — patient Dupont"
SENDER = {"name": "Dr Émilie Martin", "address": "e.martin@ch-exemple.mssante.fr"}


@pytest.fixture
def previewing(services, sender: FcmSender) -> Dispatcher:
    return Dispatcher(services.sessions, sender, previews=True)


def test_a_device_with_a_key_decrypts_sender_and_subject_from_its_push(
    world: World, previewing: Dispatcher, fake_fcm: FakeFcm
) -> None:
    key = os.urandom(32)
    user = world.user()
    world.device(user, "with-key", push_key=key)
    world.device(user, "without-key")
    mailbox_id, public_id = world.mailbox(user)
    world.new_mail(mailbox_id, subject=SUBJECT, sender=SENDER)

    previewing.drain()

    by_token = {r.token: r for r in fake_fcm.requests}
    sealed = by_token["with-key"].data
    assert sealed["kid"] == previews.key_id(key)
    # What the app does with the key it registered:
    assert previews.open_sealed(key, public_id, sealed["enc"]) == {
        "from": "Dr Émilie Martin",
        "subject": SUBJECT,
    }
    assert set(by_token["without-key"].data) == {"v", "type", "mailbox", "unread"}
    wire = json.dumps([r.body for r in fake_fcm.requests], ensure_ascii=False)
    assert "Dupont" not in wire and "Martin" not in wire


def test_previews_stay_off_unless_the_establishment_enables_them(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    user = world.user()
    world.device(user, "with-key", push_key=os.urandom(32))
    mailbox_id, _public_id = world.mailbox(user)
    world.new_mail(mailbox_id, subject=SUBJECT, sender=SENDER)

    dispatcher.drain()

    [request] = fake_fcm.requests
    assert set(request.data) == {"v", "type", "mailbox", "unread"}


def test_a_sealed_preview_opens_only_with_its_key_and_for_its_mailbox() -> None:
    key = os.urandom(32)
    sealed = previews.seal(key, "mbx_one", {"from": "A", "subject": "B"})

    raw = base64.b64decode(sealed["enc"])
    assert len(raw) == 12 + len(b'{"from":"A","subject":"B"}') + 16  # nonce|ciphertext|tag
    with pytest.raises(InvalidTag):
        previews.open_sealed(os.urandom(32), "mbx_one", sealed["enc"])
    with pytest.raises(InvalidTag):
        previews.open_sealed(key, "mbx_other", sealed["enc"])  # replayed onto another mailbox
    assert previews.seal(key, "mbx_one", {"from": "A", "subject": "B"}) != sealed  # fresh nonce


def test_a_long_subject_is_cut_to_fit_fcms_4kb_data_limit() -> None:
    key = os.urandom(32)
    sealed = previews.seal(key, "mbx", previews.preview_of({"name": "N" * 500}, "S" * 5000))

    assert len(json.dumps(sealed)) < 1024
    opened = previews.open_sealed(key, "mbx", sealed["enc"])
    assert len(opened["from"]) == previews.MAX_FROM_CHARS
    assert len(opened["subject"]) == previews.MAX_SUBJECT_CHARS


@pytest.fixture
def previews_app(make_app):
    app = make_app(ESTAFETTE_PUSH_PREVIEWS="on")
    yield app


def _stored_key(app, username: str) -> bytes | None:
    with app.extensions["estafette"].sessions() as db:
        device = db.scalar(
            select(Device)
            .join(User, User.id == Device.user_id)
            .where(User.username == username)
            .order_by(Device.id.desc())
        )
        return device.push_key


def test_a_device_registers_its_push_key_at_sign_in_when_previews_are_on(previews_app) -> None:
    username = create_user(previews_app.extensions["estafette"])
    key = os.urandom(32)
    device = {
        "name": "iPhone de garde",
        "platform": "ios",
        "push_token": "apns-token",
        "push_key": base64.b64encode(key).decode(),
    }

    Authenticator().sign_in(previews_app.test_client(), username, device=device)

    assert _stored_key(previews_app, username) == key


def test_a_push_key_is_not_kept_when_previews_are_off(app, services) -> None:
    username = create_user(services)
    device = {"name": "Pixel", "platform": "android", "push_key": base64.b64encode(b"k" * 32)}
    device["push_key"] = device["push_key"].decode()

    Authenticator().sign_in(app.test_client(), username, device=device)

    assert _stored_key(app, username) is None


@pytest.mark.parametrize("bad_key", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_push_key_that_is_not_32_bytes_is_refused(previews_app, bad_key: str) -> None:
    client = previews_app.test_client()
    username = create_user(previews_app.extensions["estafette"])
    authenticator = Authenticator()
    authenticator.sign_in(client, username)  # enrols TOTP
    login = client.post(
        "/api/v1/auth/login",
        json={"username": username, "password": "correct horse battery staple"},
    )
    mfa = body(login)["mfa_token"]

    answer = client.post(
        "/api/v1/auth/otp",
        headers={"Authorization": f"Bearer {mfa}"},
        json={
            "code": authenticator.next_code(),
            "device": {"name": "Pixel", "platform": "android", "push_key": bad_key},
        },
    )

    assert answer.status_code == 422
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert "push_key" in json.dumps(body(answer))
