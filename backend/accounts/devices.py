"""Devices: every session belongs to one, so a lost phone can be signed out on its own."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import errors
from backend.storage.models import Device, User, utcnow

PLATFORMS = ("android", "ios", "web")


def register_device(
    *,
    db: Session,
    user: User,
    name: str,
    platform: str,
    push_token: str | None = None,
    auth_method: str = "totp",
) -> Device:
    """A new device session after a successful second factor."""
    now = utcnow()
    device = Device(
        user_id=user.id,
        name=name,
        platform=platform,
        push_token=push_token or None,
        push_token_updated_at=now if push_token else None,
        auth_method=auth_method,
        authenticated_at=now,
        last_seen_at=now,
    )
    db.add(device)
    db.flush()
    return device


def list_devices(*, db: Session, user: User) -> list[Device]:
    return list(
        db.scalars(
            select(Device)
            .where(Device.user_id == user.id, Device.revoked_at.is_(None))
            .order_by(Device.created_at)
        )
    )


def get_device(*, db: Session, public_id: str, user: User | None = None) -> Device:
    """A device by id; another user's device is `not_found`, never `forbidden`."""
    query = select(Device).where(Device.public_id == public_id, Device.revoked_at.is_(None))
    if user is not None:
        query = query.where(Device.user_id == user.id)
    device = db.scalar(query)
    if device is None:
        raise errors.NotFound("no such device")
    return device


def revoke_device(*, db: Session, device: Device) -> None:
    """End every session of the device at once and forget its push token."""
    device.revoked_at = utcnow()
    device.refresh_jti = None
    device.push_token = None


def set_push_token(*, db: Session, device: Device, push_token: str, platform: str) -> None:
    device.push_token = push_token
    device.platform = platform
    device.push_token_updated_at = utcnow()


def touch(device: Device, *, min_interval: timedelta = timedelta(seconds=30)) -> bool:
    """Record activity; skip the write when the last one is very recent."""
    now = utcnow()
    if now - device.last_seen_at < min_interval:
        return False
    device.last_seen_at = now
    return True
