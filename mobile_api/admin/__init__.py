"""The administration API (admin role with a fresh second factor): users, mailboxes,
delegation, devices, the audit trail and certificates. Every change is audited."""

from __future__ import annotations

from typing import Any

from flask_smorest import Api

from backend.storage.models import AuditRecord
from mobile_api.context import current_actor, services


def audit_admin(
    action: str,
    *,
    target_type: str | None = None,
    target: str | None = None,
    mailbox: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    """Record an admin action under the signed-in administrator."""
    return services().audit.record(
        action,
        actor=current_actor(),
        target_type=target_type,
        target=target,
        mailbox=mailbox,
        details=details,
    )


def register_admin(api: Api) -> None:
    """Register every admin blueprint on the app's Api."""
    from mobile_api.admin import audit, certificates, devices, mailboxes, users

    for module in (users, mailboxes, devices, audit, certificates):
        api.register_blueprint(module.blp)
