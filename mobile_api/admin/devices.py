"""Admin: every signed-in device, and remote revocation of a lost phone."""

from __future__ import annotations

from flask_smorest import Blueprint
from sqlalchemy import select

from backend.accounts import devices as device_service
from backend.accounts import users as accounts
from backend.admin import accounts as admin_accounts
from backend.admin.audited_changes import AdminChange
from backend.storage.models import Device, User
from mobile_api.admin import commit_change, schemas
from mobile_api.auditing import audited
from mobile_api.auth.tokens import admin_required
from mobile_api.context import db
from mobile_api.pagination import decode_cursor, encode_cursor

blp = Blueprint(
    "admin_devices", __name__, url_prefix="/api/v1/admin/devices", description="Admin: devices"
)


def _view(device: Device, user: User) -> dict:
    return {
        "id": device.public_id,
        "user_id": user.public_id,
        "username": user.username,
        "name": device.name,
        "platform": device.platform,
        "auth_method": device.auth_method,
        "has_push_token": bool(device.push_token),
        "authenticated_at": device.authenticated_at,
        "created_at": device.created_at,
        "last_seen_at": device.last_seen_at,
        "last_push_at": device.last_push_at,
        "last_push_status": device.last_push_status,
    }


@blp.get("")
@audited("admin.device_list", target_type="device")
@admin_required
@blp.arguments(schemas.DeviceArgsSchema, location="query")
@blp.response(200, schemas.DevicePageSchema)
def list_devices(args: dict) -> dict:
    """Live devices of every user (or of `user`), oldest first."""
    user = accounts.get_user(db=db(), public_id=args["user"]) if args["user"] else None
    after = decode_cursor(args["cursor"], 1)
    rows, next_key = admin_accounts.list_devices(
        db=db(), limit=args["limit"], after=int(after[0]) if after else None, user=user
    )
    owners = dict(
        db().execute(select(User.id, User).where(User.id.in_({d.user_id for d in rows}))).all()
    )
    return {
        "items": [_view(d, owners[d.user_id]) for d in rows],
        "next": encode_cursor(next_key) if next_key else None,
    }


@blp.delete("/<device_id>")
@audited("admin.device_revoke", target_type="device", target="device_id")
@admin_required
@blp.response(204)
def revoke_device(device_id: str) -> None:
    """Revoke a lost phone: its tokens stop working and its pushes stop at once."""
    device = admin_accounts.get_device(db=db(), public_id=device_id)
    owner = db().get(User, device.user_id)
    device_service.revoke_device(db=db(), device=device)
    commit_change(
        AdminChange(
            "admin.device_revoke",
            target_type="device",
            target=device.public_id,
            details={"user": owner.public_id},
        )
    )
