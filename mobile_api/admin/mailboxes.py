"""Admin: mailboxes of the four kinds, their IMAP/SMTP settings, and delegation.

Secrets and the .p12 are written, encrypted at rest by the model, and never read back
out: responses show `secret_set` / `certificate_set` only.
"""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint
from marshmallow import ValidationError
from sqlalchemy import select

from backend import errors
from backend.accounts import users as accounts
from backend.admin import diffs
from backend.admin import mailboxes as admin_mailboxes
from backend.admin.audited_changes import AdminChange, member_granted, member_revoked
from backend.mailboxes import registry
from backend.storage.database import page_of
from backend.storage.models import Mailbox
from mobile_api.admin import commit_change, schemas
from mobile_api.auditing import audited
from mobile_api.auth.tokens import admin_required
from mobile_api.context import db
from mobile_api.pagination import PageArgsSchema, decode_cursor, encode_cursor

blp = Blueprint(
    "admin_mailboxes",
    __name__,
    url_prefix="/api/v1/admin/mailboxes",
    description="Admin: mailboxes and delegation",
)


def _server(mailbox: Mailbox, prefix: str) -> dict | None:
    host = getattr(mailbox, f"{prefix}_host")
    if host is None:
        return None
    view = {
        name: getattr(mailbox, f"{prefix}_{name}")
        for name in ("host", "port", "security", "auth", "username")
    }
    view["secret_set"] = getattr(mailbox, f"{prefix}_secret") is not None
    if prefix == "imap":
        view["certificate_set"] = mailbox.imap_certificate is not None
        view["token_url"] = mailbox.imap_token_url
        view["client_id"] = mailbox.imap_client_id
    return view


def _view(mailbox: Mailbox, *, with_members: bool = True) -> dict:
    view = {
        "id": mailbox.public_id,
        "address": mailbox.address,
        "kind": mailbox.kind,
        "display_name": mailbox.display_name,
        "imap": _server(mailbox, "imap"),
        "smtp": _server(mailbox, "smtp"),
        "max_message_bytes": mailbox.max_message_bytes,
        "sync": {
            "state": mailbox.sync_state,
            "detail": mailbox.sync_detail,
            "changed_at": mailbox.sync_changed_at,
            "settings_version": mailbox.settings_version,
        },
        "created_at": mailbox.created_at,
    }
    if with_members:
        view["members"] = [
            {"user_id": user.public_id, "username": user.username, "role": role}
            for user, role in admin_mailboxes.members(db=db(), mailbox=mailbox)
        ]
    return view


def _server_settings(values: dict) -> registry.ServerSettings:
    return registry.ServerSettings(
        values["host"],
        values["port"],
        values["security"],
        values["auth"],
        values.get("username"),
        values.get("secret"),
        values.get("token_url"),
        values.get("client_id"),
    )


@blp.get("")
@audited("admin.mailbox_list", target_type="mailbox")
@admin_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, schemas.MailboxPageSchema)
def list_mailboxes(args: dict) -> dict:
    """Every mailbox, oldest first, with its sync state (members: GET one mailbox)."""
    after = decode_cursor(args["cursor"], 1)
    rows, next_key = page_of(
        db(),
        select(Mailbox),
        Mailbox.id,
        limit=args["limit"],
        after=int(after[0]) if after else None,
    )
    return {
        "items": [_view(m, with_members=False) for m in rows],
        "next": encode_cursor(next_key) if next_key else None,
    }


@blp.post("")
@audited("admin.mailbox_create", target_type="mailbox")
@admin_required
@blp.arguments(schemas.MailboxCreateSchema)
@blp.response(201, schemas.AdminMailboxSchema)
def create_mailbox(body: dict) -> dict:
    """Register a PER, ORG, APP or CAB mailbox; sync picks it up on its next heartbeat."""
    imap = body["imap"]
    mailbox, change = admin_mailboxes.register_mailbox(
        db=db(),
        address=body["address"],
        kind=body["kind"],
        display_name=body["display_name"],
        imap=_server_settings(imap),
        certificate=imap.get("certificate"),
        smtp=_server_settings(body["smtp"]) if body["smtp"] else None,
        max_message_bytes=body["max_message_bytes"],
    )
    commit_change(change)
    return _view(mailbox)


@blp.get("/<mailbox_id>")
@audited("admin.mailbox_read", target_type="mailbox", target="mailbox_id", mailbox="mailbox_id")
@admin_required
@blp.response(200, schemas.AdminMailboxSchema)
def get_mailbox(mailbox_id: str) -> dict:
    """One mailbox with its settings (secrets shown as set or not) and its members."""
    return _view(admin_mailboxes.get_mailbox(db=db(), public_id=mailbox_id))


@blp.patch("/<mailbox_id>")
@audited("admin.mailbox_update", target_type="mailbox", target="mailbox_id", mailbox="mailbox_id")
@admin_required
@blp.arguments(schemas.MailboxPatchSchema)
@blp.response(200, schemas.AdminMailboxSchema)
def update_mailbox(body: dict, mailbox_id: str) -> dict:
    """Change settings; an IMAP change restarts this mailbox's sync, not the worker."""
    return _apply_update(admin_mailboxes.get_mailbox(db=db(), public_id=mailbox_id), body)


def _apply_update(mailbox: Mailbox, patch: dict) -> dict:
    """Store a settings change and audit it (before/after, secrets only as set/replaced)."""
    change = admin_mailboxes.update_mailbox(db=db(), mailbox=mailbox, patch=patch)
    commit_change(
        AdminChange(
            "admin.mailbox_update",
            target_type="mailbox",
            target=mailbox.public_id,
            mailbox=mailbox.public_id,
            details={**change.details, "sync_restarted": change.restarted_sync},
        )
    )
    return _view(mailbox)


@blp.put("/<mailbox_id>/certificate")
@audited("admin.mailbox_update", target_type="mailbox", target="mailbox_id", mailbox="mailbox_id")
@admin_required
@blp.arguments(schemas.CertificateFileSchema, location="files")
@blp.response(200, schemas.AdminMailboxSchema)
def upload_certificate(files: dict, mailbox_id: str) -> dict:
    """Multipart upload of the mailbox's .p12: a `certificate` file part, and an optional
    `passphrase` form field (else the stored secret opens it)."""
    # OpenAPI 3 has one request body: the form field is read here, still through a schema.
    try:
        form = schemas.CertificateFormSchema().load(request.form)
    except ValidationError as exc:
        raise errors.ValidationFailed(exc.normalized_messages()) from None
    mailbox = admin_mailboxes.get_mailbox(db=db(), public_id=mailbox_id)
    p12 = files["certificate"].read(schemas.MAX_P12_BYTES + 1)
    if not p12 or len(p12) > schemas.MAX_P12_BYTES:
        raise errors.ValidationFailed(
            {"certificate": [f"Between 1 and {schemas.MAX_P12_BYTES} bytes."]}
        )
    imap: dict = {"certificate": p12}
    if form["passphrase"] is not None:
        imap["secret"] = form["passphrase"]
    return _apply_update(mailbox, {"imap": imap})


@blp.delete("/<mailbox_id>")
@audited("admin.mailbox_delete", target_type="mailbox", target="mailbox_id", mailbox="mailbox_id")
@admin_required
@blp.response(204)
def delete_mailbox(mailbox_id: str) -> None:
    """Forget the mailbox (members, cache, pending pushes); mail on the server stays."""
    mailbox = admin_mailboxes.get_mailbox(db=db(), public_id=mailbox_id)
    public_id, before = mailbox.public_id, diffs.mailbox_settings(mailbox)
    admin_mailboxes.delete_mailbox(db=db(), mailbox=mailbox)
    commit_change(
        AdminChange(
            "admin.mailbox_delete",
            target_type="mailbox",
            target=public_id,
            mailbox=public_id,
            details={f"before.{k}": v for k, v in before.items() if k in ("kind", "imap.auth")},
        )
    )


@blp.put("/<mailbox_id>/members/<user_id>")
@audited("admin.member_grant", target_type="user", target="user_id", mailbox="mailbox_id")
@admin_required
@blp.arguments(schemas.RoleSchema)
@blp.response(200, schemas.MemberSchema)
def put_member(body: dict, mailbox_id: str, user_id: str) -> dict:
    """Make a user the owner or a delegate of the mailbox (or change their role)."""
    mailbox = admin_mailboxes.get_mailbox(db=db(), public_id=mailbox_id)
    user = accounts.get_user(db=db(), public_id=user_id)
    previous = admin_mailboxes.set_member(db=db(), mailbox=mailbox, user=user, role=body["role"])
    commit_change(member_granted(mailbox, user, previous, body["role"]))
    return {"user_id": user.public_id, "username": user.username, "role": body["role"]}


@blp.delete("/<mailbox_id>/members/<user_id>")
@audited("admin.member_revoke", target_type="user", target="user_id", mailbox="mailbox_id")
@admin_required
@blp.response(204)
def delete_member(mailbox_id: str, user_id: str) -> None:
    """Remove a member: their access and their pushes for this mailbox stop at once."""
    mailbox = admin_mailboxes.get_mailbox(db=db(), public_id=mailbox_id)
    user = accounts.get_user(db=db(), public_id=user_id)
    role = admin_mailboxes.remove_member(db=db(), mailbox=mailbox, user=user)
    commit_change(member_revoked(mailbox, user, role))
