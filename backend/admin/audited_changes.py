"""An administrator's change and its audit record, committed together or not at all.

The API's admin views and the CLI make the same changes through `backend.admin`; each
service describes what it changed as an `AdminChange`, and `audit_change` appends the
record in the caller's open transaction (AuditTrail.record `within`). A crash, or a
failed audit write, between the change and its record therefore leaves neither: there
is no admin action without its trace. Both front ends write the same details for the
same change; only the actor differs (the admin's session, or `cli`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from backend.admin import diffs
from backend.audit.trail import Actor, AuditTrail
from backend.storage.models import Mailbox, User

CLI = Actor(user="cli")  # the operator at the server's console


@dataclass(frozen=True)
class AdminChange:
    action: str
    target_type: str
    target: str
    mailbox: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def audit_change(db: Session, trail: AuditTrail, change: AdminChange, *, actor: Actor) -> None:
    """Record `change` in `db`'s transaction; the caller commits both."""
    trail.record(
        change.action,
        actor=actor,
        target_type=change.target_type,
        target=change.target,
        mailbox=change.mailbox,
        details=change.details or None,
        within=db,
    )


def user_created(user: User) -> AdminChange:
    return AdminChange(
        "admin.user_create",
        "user",
        user.public_id,
        details={"after.is_admin": user.is_admin, "after.cps_id_set": bool(user.cps_id)},
    )


def user_updated(user: User, details: dict[str, Any]) -> AdminChange:
    return AdminChange("admin.user_update", "user", user.public_id, details=details)


def mailbox_created(mailbox: Mailbox) -> AdminChange:
    return AdminChange(
        "admin.mailbox_create",
        "mailbox",
        mailbox.public_id,
        mailbox.public_id,
        diffs.created(diffs.mailbox_settings(mailbox)),
    )


def member_granted(mailbox: Mailbox, user: User, previous: str | None, role: str) -> AdminChange:
    return AdminChange(
        "admin.member_grant",
        "user",
        user.public_id,
        mailbox.public_id,
        {"before.role": previous, "after.role": role},
    )


def member_revoked(mailbox: Mailbox, user: User, role: str | None) -> AdminChange:
    return AdminChange(
        "admin.member_revoke", "user", user.public_id, mailbox.public_id, {"before.role": role}
    )
