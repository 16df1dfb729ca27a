"""Administering users and their devices.

Disabling a user, resetting their password or their TOTP ends every session they have
at once: each device is revoked, and every API call checks its device is live. The
credentials version is bumped too, so a sign-in token taken before is refused as well.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from backend import errors
from backend.accounts import devices as device_service
from backend.accounts import passwords, users
from backend.storage.database import page_of
from backend.storage.models import Device, RecoveryCode, User


def revoke_sessions(*, db: Session, user: User) -> int:
    """Sign the user out of every device; returns how many were live."""
    live = list(
        db.scalars(select(Device).where(Device.user_id == user.id, Device.revoked_at.is_(None)))
    )
    for device in live:
        device_service.revoke_device(db=db, device=device)
    return len(live)


def assign_cps_id(*, db: Session, user: User, cps_id: str | None) -> None:
    """Bind a CPS card (its professional id) to the account; one card, one account."""
    if cps_id is not None:
        taken = db.scalar(select(User.id).where(User.cps_id == cps_id, User.id != user.id))
        if taken is not None:
            raise errors.Conflict("this CPS card is already bound to another account")
    user.cps_id = cps_id


def _refuse_on_self(user: User, acting: User | None, what: str) -> None:
    # An administrator locking themselves out would leave nobody able to undo it.
    if acting is not None and acting.id == user.id:
        raise errors.Conflict(f"an administrator cannot {what} their own account")


def update_user(
    *, db: Session, user: User, patch: dict[str, Any], acting: User | None = None
) -> dict[str, Any]:
    """Apply an admin change; return the audit details (never the password itself)."""
    details: dict[str, Any] = {}
    end_sessions = False
    if "display_name" in patch and patch["display_name"] != user.display_name:
        details["changed.display_name"] = True
        user.display_name = patch["display_name"]
    if "is_admin" in patch and patch["is_admin"] != user.is_admin:
        if not patch["is_admin"]:
            _refuse_on_self(user, acting, "remove the administrator role from")
        # No need to end sessions: every admin call reads the role afresh.
        details["before.is_admin"], details["after.is_admin"] = user.is_admin, patch["is_admin"]
        user.is_admin = patch["is_admin"]
    if "disabled" in patch and patch["disabled"] != user.disabled:
        if patch["disabled"]:
            _refuse_on_self(user, acting, "disable")
        details["before.disabled"], details["after.disabled"] = user.disabled, patch["disabled"]
        user.disabled = patch["disabled"]
        end_sessions = end_sessions or user.disabled
    if patch.get("password") is not None:
        if len(patch["password"]) < 12:
            raise errors.ValidationFailed({"password": ["At least 12 characters."]})
        user.password_hash = passwords.hash_password(patch["password"])
        user.failed_otp_count, user.locked_until = 0, None
        details["password_reset"] = True
        end_sessions = True
    if patch.get("reset_otp"):
        user.totp_secret, user.totp_active, user.totp_last_step = None, False, 0
        user.failed_otp_count, user.locked_until = 0, None
        db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        details["totp"] = "reset"
        end_sessions = True
    if "cps_id" in patch and patch["cps_id"] != user.cps_id:
        assign_cps_id(db=db, user=user, cps_id=patch["cps_id"])
        details["changed.cps_id"] = True
        end_sessions = True
    if end_sessions:
        users.bump_credentials_version(db=db, user=user)
        details["sessions_revoked"] = revoke_sessions(db=db, user=user)
    db.flush()
    return details


def delete_user(*, db: Session, user: User, acting: User | None = None) -> None:
    """Remove the account with its devices and memberships; the audit trail keeps its id."""
    _refuse_on_self(user, acting, "delete")
    # The database cascades to devices, memberships and recovery codes.
    db.execute(delete(User).where(User.id == user.id))
    db.expunge(user)


def list_users(*, db: Session, limit: int, after: int | None) -> tuple[list[User], int | None]:
    return page_of(db, select(User), User.id, limit=limit, after=after)


def list_devices(
    *, db: Session, limit: int, after: int | None, user: User | None = None
) -> tuple[list[Device], int | None]:
    """Live devices of every user (or one), oldest first."""
    query = select(Device).where(Device.revoked_at.is_(None))
    if user is not None:
        query = query.where(Device.user_id == user.id)
    return page_of(db, query, Device.id, limit=limit, after=after)


def get_device(*, db: Session, public_id: str) -> Device:
    return device_service.get_device(db=db, public_id=public_id)
