"""`POST /devices/{id}/test-push`: "do notifications reach this device?", answered now.

The push goes straight to the provider, FCM or the browser's push service, and says
nothing but its type; its outcome is the answer and the device's push status.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from devtools.fcm_server import FakeFcm
from devtools.webpush_server import WebPushService, write_vapid_key
from tests.factories import create_user
from tests.support import Authenticator, bearer, body


@pytest.fixture
def gateway(make_app, tmp_path, fcm_credentials, fcm_server: FakeFcm, push_service):
    key = write_vapid_key(tmp_path / "vapid.pem")
    return make_app(
        ESTAFETTE_FCM_CREDENTIALS=str(fcm_credentials),
        ESTAFETTE_FCM_ENDPOINT=fcm_server.base_url,
        ESTAFETTE_VAPID_PRIVATE_KEY=str(key),
        ESTAFETTE_VAPID_SUBJECT="mailto:dsi@chu-test.mssante.fr",
        ESTAFETTE_WEB_PUSH_ORIGINS=push_service.origin,
    )


def _signed_in(gateway, device: dict[str, Any]) -> tuple[Any, dict, str]:
    client = gateway.test_client()
    services = gateway.extensions["estafette"]
    session = Authenticator().sign_in(client, create_user(services), device=device)
    return client, bearer(session["access_token"]), session["device_id"]


def test_a_phone_s_test_push_reaches_fcm_with_nothing_but_its_type(gateway, fcm_server) -> None:
    token = f"fcm-token-{uuid.uuid4().hex}"
    client, headers, device = _signed_in(
        gateway, {"name": "Pixel", "platform": "android", "push_token": token}
    )

    answer = client.post(f"/api/v1/devices/{device}/test-push", headers=headers)

    assert answer.status_code == 200, body(answer)
    assert body(answer) == {"status": "ok", "code": None}
    [sent] = [r.message for r in fcm_server.requests if r.message.get("token") == token]
    assert sent["data"] == {"v": "1", "type": "test"}
    [listed] = body(client.get("/api/v1/devices", headers=headers))
    assert listed["last_push_status"] == "ok" and listed["last_push_at"] is not None


def test_a_browser_s_test_push_arrives_and_a_withdrawn_one_is_pruned(
    gateway, push_service: WebPushService
) -> None:
    client, headers, device = _signed_in(gateway, {"name": "Tablette", "platform": "web"})
    browser = push_service.subscribe()
    url = f"/api/v1/devices/{device}/web-push"
    assert client.put(url, headers=headers, json=browser.subscription()).status_code == 200

    first = client.post(f"/api/v1/devices/{device}/test-push", headers=headers)
    push_service.unsubscribe(browser)
    second = client.post(f"/api/v1/devices/{device}/test-push", headers=headers)

    assert body(first) == {"status": "ok", "code": None}
    assert [r.payload for r in push_service.received_by(browser)] == [{"v": "1", "type": "test"}]
    assert body(second) == {"status": "pruned", "code": "HTTP_410"}
    [listed] = body(client.get("/api/v1/devices", headers=headers))
    assert listed["has_push_token"] is False


def test_a_device_with_no_token_has_nothing_to_test(gateway) -> None:
    client, headers, device = _signed_in(gateway, {"name": "Poste", "platform": "web"})

    answer = client.post(f"/api/v1/devices/{device}/test-push", headers=headers)

    assert answer.status_code == 409
    assert body(answer)["code"] == "no_push_token"


def test_test_pushes_are_rate_limited_per_user(gateway) -> None:
    client, headers, device = _signed_in(
        gateway, {"name": "Pixel", "platform": "android", "push_token": "fcm-token-limit"}
    )
    statuses = [
        client.post(f"/api/v1/devices/{device}/test-push", headers=headers).status_code
        for _ in range(6)
    ]
    assert statuses == [200] * 5 + [429]
