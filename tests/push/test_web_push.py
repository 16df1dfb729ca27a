"""Web Push for the web client: a browser subscribes, and its pushes say as little as FCM's.

A local push service (devtools/webpush_server.py) checks each request's VAPID signature
(RFC 8292) and decrypts its body as the browser would (RFC 8291, aes128gcm), so these
tests read what a service worker would read. It fails like the real services do.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.push.dispatcher import Dispatcher
from backend.push.routing import create_senders
from backend.storage.models import OutboxEvent, User
from devtools.drills.world import World
from devtools.webpush_server import WebPushService, write_vapid_key
from tests.factories import create_user
from tests.support import Authenticator, bearer, body

SUBJECT = "mailto:dsi@chu-test.mssante.fr"
CANARY = "Mme CANARI Berthe"


@pytest.fixture
def vapid_key(tmp_path) -> str:
    return str(write_vapid_key(tmp_path / "vapid.pem"))


@pytest.fixture
def web_app(make_app, vapid_key, push_service):
    return make_app(
        ESTAFETTE_VAPID_PRIVATE_KEY=vapid_key,
        ESTAFETTE_VAPID_SUBJECT=SUBJECT,
        ESTAFETTE_WEB_PUSH_ORIGINS=push_service.origin,
    )


@pytest.fixture
def nurse(web_app) -> dict[str, Any]:
    """A nurse signed in from a ward tablet's browser."""
    services = web_app.extensions["estafette"]
    client = web_app.test_client()
    username = create_user(services)
    session = Authenticator().sign_in(
        client, username, device={"name": "Tablette", "platform": "web"}
    )
    with services.sessions() as db:
        user_id = db.scalar(select(User.id).where(User.username == username))
    return {
        "services": services,
        "http": client,
        "headers": bearer(session["access_token"]),
        "device": session["device_id"],
        "user_id": user_id,
    }


def _subscribe(nurse: dict[str, Any], subscription: dict[str, Any]) -> Any:
    return nurse["http"].put(
        f"/api/v1/devices/{nurse['device']}/web-push", headers=nurse["headers"], json=subscription
    )


def _dispatch(nurse: dict[str, Any]) -> None:
    services = nurse["services"]
    sender = create_senders(services.settings)
    try:
        Dispatcher(services.sessions, sender).drain()
    finally:
        sender.close()


def test_a_browser_push_is_signed_encrypted_and_says_only_what_fcm_says(
    nurse, push_service: WebPushService
) -> None:
    browser = push_service.subscribe()
    key = body(
        nurse["http"].get(f"/api/v1/devices/{nurse['device']}/web-push", headers=nurse["headers"])
    )
    assert _subscribe(nurse, browser.subscription()).status_code == 200
    world = World(nurse["services"])
    mailbox_id, public_id = world.mailbox(nurse["user_id"])
    world.new_mail(mailbox_id, urgent=True, subject=CANARY, sender={"name": CANARY})

    _dispatch(nurse)

    [push] = push_service.received_by(browser)
    assert push.payload == {
        "v": "1",
        "type": "mail.new",
        "mailbox": public_id,
        "unread": "1",
        "urgent": "1",
    }
    assert push.headers["Urgency"] == "high"
    assert push.headers["Topic"] == public_id  # a later push replaces this one, as on FCM
    assert push.headers["Content-Encoding"] == "aes128gcm"
    assert push.claims["aud"] == push_service.origin and push.claims["sub"] == SUBJECT
    assert push.vapid_key == key["public_key"]  # what the page subscribed with
    [device] = body(nurse["http"].get("/api/v1/devices", headers=nurse["headers"]))
    assert device["last_push_status"] == "ok" and device["platform"] == "web"


def test_nothing_of_the_mail_travels_in_clear_or_sealed(nurse, push_service) -> None:
    browser = push_service.subscribe()
    _subscribe(nurse, browser.subscription())
    world = World(nurse["services"])
    mailbox_id, _public_id = world.mailbox(nurse["user_id"])
    world.new_mail(mailbox_id, subject=CANARY, sender={"name": CANARY, "address": "x@y.fr"})

    _dispatch(nurse)

    [push] = push_service.received_by(browser)
    assert "CANARI" not in repr(push.payload) + repr(push.headers) + repr(push.claims)


def test_a_subscription_the_browser_withdrew_is_pruned(nurse, push_service) -> None:
    browser = push_service.subscribe()
    _subscribe(nurse, browser.subscription())
    push_service.unsubscribe(browser)  # 410 Gone from now on
    world = World(nurse["services"])
    world.new_mail(world.mailbox(nurse["user_id"])[0])

    _dispatch(nurse)

    [device] = body(nurse["http"].get("/api/v1/devices", headers=nurse["headers"]))
    assert device["last_push_status"] == "pruned"
    assert device["has_push_token"] is False  # the page must subscribe again


def test_a_busy_push_service_is_retried_after_the_time_it_asks(nurse, push_service) -> None:
    browser = push_service.subscribe()
    _subscribe(nurse, browser.subscription())
    world = World(nurse["services"])
    _message, event_id = world.new_mail(world.mailbox(nurse["user_id"])[0])
    push_service.fail_next(429, retry_after="120")

    _dispatch(nurse)

    assert push_service.received_by(browser) == []
    [device] = body(nurse["http"].get("/api/v1/devices", headers=nurse["headers"]))
    assert device["last_push_status"] == "retrying"
    with nurse["services"].sessions() as db:
        event = db.get(OutboxEvent, event_id)
        assert (event.available_at - event.created_at).total_seconds() >= 110


@pytest.mark.parametrize(
    ("subscription", "code"),
    [
        ({"endpoint": "http://10.0.0.8/admin", "keys": "same"}, "push_service_not_allowed"),
        ({"endpoint": "same", "keys": {"p256dh": "AAAA", "auth": "same"}}, "validation_error"),
        ({"endpoint": "same", "keys": {"p256dh": "same", "auth": "c2hvcnQ"}}, "validation_error"),
        ({"endpoint": "same"}, "validation_error"),
    ],
)
def test_a_subscription_that_is_not_a_push_service_s_is_refused(
    nurse, push_service, subscription: dict, code: str
) -> None:
    valid = push_service.subscribe().subscription()
    for name in ("endpoint", "keys"):
        if subscription.get(name) == "same":
            subscription[name] = valid[name]
    keys = subscription.get("keys")
    if isinstance(keys, dict):
        subscription["keys"] = {k: valid["keys"][k] if v == "same" else v for k, v in keys.items()}

    answer = _subscribe(nurse, subscription)

    assert answer.status_code == 422
    assert body(answer)["code"] == code


def test_without_a_vapid_key_the_gateway_says_web_push_is_unavailable(client, services) -> None:
    session = Authenticator().sign_in(
        client, create_user(services), device={"name": "Poste", "platform": "web"}
    )
    headers = bearer(session["access_token"])

    answer = client.get(f"/api/v1/devices/{session['device_id']}/web-push", headers=headers)

    assert answer.status_code == 503
    assert body(answer)["code"] == "web_push_unavailable"
