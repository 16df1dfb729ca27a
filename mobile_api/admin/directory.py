"""Admin: follow the establishment IdP's directory now (what `users sync-idp` does)."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from backend.accounts import directory_sync
from mobile_api.auditing import audited, note
from mobile_api.auth.tokens import admin_required
from mobile_api.context import db, services
from mobile_api.errors import documented_problems

blp = Blueprint(
    "admin_directory",
    __name__,
    url_prefix="/api/v1/admin/directory-sync",
    description="Admin: the IdP's directory",
)


class SyncReportSchema(Schema):
    provider = fields.String(required=True)
    created = fields.Integer(required=True)
    enabled = fields.Integer(required=True)
    disabled = fields.Integer(required=True)
    granted = fields.Integer(required=True)
    revoked = fields.Integer(required=True)


class SyncResultSchema(Schema):
    providers = fields.List(fields.Nested(SyncReportSchema), required=True)


@blp.post("")
@audited("admin.directory_sync")
@admin_required
@blp.response(200, SyncResultSchema)
@documented_problems(
    blp, {502: "`directory_unavailable`: a directory could not be read; nothing changed."}
)
def sync_now() -> dict:
    """Import users and group-based mailbox grants from every IdP directory (SCIM 2.0);
    leavers are disabled and their sessions end. Each change is audited on its own."""
    reports = []
    for settings in directory_sync.directory_providers(services().settings.oidc_providers):
        report = directory_sync.sync_directory(
            db=db(), trail=services().audit, settings=settings, actor=g.actor
        )
        db().commit()
        reports.append(report.as_dict())
    note(providers=len(reports))
    return {"providers": reports}
