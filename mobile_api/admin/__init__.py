"""The administration API (admin role with a fresh second factor): users, mailboxes,
delegation, devices, the audit trail and certificates. Every change is audited."""

from __future__ import annotations

from typing import Any

from flask_smorest import Api

from mobile_api.auditing import note


def audit_admin(
    action: str,
    *,
    target_type: str | None = None,
    target: str | None = None,
    mailbox: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Complete this admin call's audit record with the change (before/after, no secret)."""
    note(action=action, target_type=target_type, target=target, mailbox=mailbox, details=details)


def register_admin(api: Api) -> None:
    """Register every admin blueprint on the app's Api."""
    from mobile_api.admin import audit, certificates, devices, mailboxes, users

    for module in (users, mailboxes, devices, audit, certificates):
        api.register_blueprint(module.blp)
