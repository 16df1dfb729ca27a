"""The administration API (admin role with a fresh second factor): users, mailboxes,
delegation, devices, the audit trail and certificates. Every change is audited."""

from __future__ import annotations

from flask import g
from flask_smorest import Api

from backend.admin.audited_changes import AdminChange, audit_change
from mobile_api.auditing import recorded
from mobile_api.context import db, services


def commit_change(change: AdminChange) -> None:
    """Record this admin call's change in the view's transaction, then commit both: a
    crash or a failed audit write between them leaves neither (backend.admin.audited_changes).
    The call's audit record is then written, and after_request does not write it again."""
    audit_change(db(), services().audit, change, actor=g.actor)
    db().commit()
    recorded()


def register_admin(api: Api) -> None:
    """Register every admin blueprint on the app's Api."""
    from mobile_api.admin import audit, certificates, devices, directory, mailboxes, users

    for module in (users, mailboxes, devices, audit, certificates, directory):
        api.register_blueprint(module.blp)
