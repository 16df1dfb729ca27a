"""The user's own devices: list, update the push token, sign a lost phone out."""

from __future__ import annotations

import json

from flask import g
from flask_smorest import Blueprint

from backend import errors
from backend.accounts import devices as device_service
from backend.push import probe, webpush
from mobile_api.auditing import audited, note
from mobile_api.auth.tokens import session_required
from mobile_api.context import db, services
from mobile_api.devices import schemas
from mobile_api.errors import documented_problems
from mobile_api.limits import TEST_PUSH_PER_USER, account_from_token, limiter

blp = Blueprint("devices", __name__, url_prefix="/api/v1/devices", description="Devices")


@blp.get("")
@audited("device.list", target_type="device")
@blp.response(200, schemas.DeviceSchema(many=True))
@session_required
def list_devices() -> list:
    """The user's signed-in devices, with the outcome of the last push to each."""
    return device_service.list_devices(db=db(), user=g.user)


@blp.put("/<device_id>/push-token")
@audited("device.push_token", target_type="device", target="device_id")
@blp.arguments(schemas.PushTokenSchema)
@blp.response(200, schemas.DeviceSchema)
@session_required
def put_push_token(body: dict, device_id: str) -> object:
    """Register or refresh the FCM/APNs token of one of the user's devices."""
    device = device_service.get_device(db=db(), public_id=device_id, user=g.user)
    device_service.set_push_token(
        db=db(), device=device, push_token=body["push_token"], platform=body["platform"]
    )
    db().commit()
    return device


@blp.get("/<device_id>/web-push")
@audited("device.web_push_key", target_type="device", target="device_id")
@blp.response(200, schemas.WebPushKeySchema)
@documented_problems(
    blp,
    {
        404: "`not_found`: not a device of yours.",
        503: "`web_push_unavailable`: no VAPID key on this gateway; use FCM.",
    },
)
@session_required
def get_web_push_key(device_id: str) -> dict:
    """The key this device's browser subscribes with (`applicationServerKey`), before
    `PUT web-push`."""
    device_service.get_device(db=db(), public_id=device_id, user=g.user)
    settings = services().settings
    if not settings.web_push_configured:
        raise errors.WebPushUnavailable()
    return {"public_key": webpush.public_key(settings.vapid_private_key)}


@blp.put("/<device_id>/web-push")
@audited("device.web_push", target_type="device", target="device_id")
@blp.arguments(schemas.WebPushSubscriptionSchema)
@blp.response(200, schemas.DeviceSchema)
@documented_problems(
    blp,
    {
        422: "`validation_error`, or `push_service_not_allowed`: the endpoint is not at a "
        "push service this gateway posts to (ESTAFETTE_WEB_PUSH_ORIGINS).",
        503: "`web_push_unavailable`: no VAPID key on this gateway; use FCM.",
    },
)
@session_required
def put_web_push(body: dict, device_id: str) -> object:
    """Register a browser's Web Push subscription (RFC 8030) for one of the user's devices.

    Pushes then go to its push service, encrypted for the browser (RFC 8291) and signed
    with the gateway's VAPID key: the same content-free data as an FCM push."""
    device = device_service.get_device(db=db(), public_id=device_id, user=g.user)
    settings = services().settings
    if not settings.web_push_configured:
        raise errors.WebPushUnavailable()
    if not webpush.origin_allowed(body["endpoint"], settings.web_push_origins):
        raise errors.PushServiceNotAllowed()
    subscription = {"endpoint": body["endpoint"], "keys": body["keys"]}
    device_service.set_push_token(
        db=db(),
        device=device,
        push_token=json.dumps(subscription, sort_keys=True, separators=(",", ":")),
        platform="web",
    )
    db().commit()
    return device


@blp.post("/<device_id>/test-push")
@audited("device.test_push", target_type="device", target="device_id")
@blp.response(200, schemas.TestPushSchema)
@documented_problems(
    blp,
    {
        404: "`not_found`: not a device of yours.",
        409: "`no_push_token`: the device has registered no token or subscription yet.",
        429: "`rate_limited`: a few tests a minute are enough.",
    },
)
@session_required
@limiter.limit(TEST_PUSH_PER_USER, key_func=account_from_token)  # once the user is known
def test_push(device_id: str) -> dict:
    """Send a content-free `test` push to one of your devices now, and say how it ended.

    Its data is `{"v": "1", "type": "test"}` only. Unlike mail pushes it does not go
    through the outbox: the answer is the provider's."""
    device = device_service.get_device(db=db(), public_id=device_id, user=g.user)
    if not device.push_token:
        raise errors.NoPushToken()
    status, outcome = probe.send_test_push(db=db(), settings=services().settings, device=device)
    note(outcome=status)
    db().commit()
    return {"status": status, "code": outcome.code}


@blp.delete("/<device_id>")
@audited("device.revoke", target_type="device", target="device_id")
@blp.response(204)
@session_required
def delete_device(device_id: str) -> None:
    """Remote sign-out: the device's tokens stop working at once."""
    device = device_service.get_device(db=db(), public_id=device_id, user=g.user)
    device_service.revoke_device(db=db(), device=device)
    db().commit()
