"""The user's own devices: list, update the push token, sign a lost phone out."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from backend.accounts import devices as device_service
from mobile_api.auditing import audited
from mobile_api.auth.tokens import session_required
from mobile_api.context import db
from mobile_api.devices import schemas

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


@blp.delete("/<device_id>")
@audited("device.revoke", target_type="device", target="device_id")
@blp.response(204)
@session_required
def delete_device(device_id: str) -> None:
    """Remote sign-out: the device's tokens stop working at once."""
    device = device_service.get_device(db=db(), public_id=device_id, user=g.user)
    device_service.revoke_device(db=db(), device=device)
    db().commit()
