"""Admin payloads (API.md, "Administration"). Secrets go in, never out: `secret_set` instead."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC
from typing import Any

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate

from backend.mailboxes.registry import AUTH_MODES, KINDS, ROLES, SECURITY
from backend.outgoing.headers import SINGLE_LINE, is_safe_header_value
from mobile_api.pagination import PageArgsSchema

MAX_P12_BYTES = 64 * 1024


class Base64Bytes(fields.Field):
    """Binary uploads (a .p12) as standard base64 in JSON."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bytes:
        if not isinstance(value, str):
            raise ValidationError("Base64 text expected.")
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationError("Not valid base64.") from exc
        if not decoded or len(decoded) > MAX_P12_BYTES:
            raise ValidationError(f"Between 1 and {MAX_P12_BYTES} bytes.")
        return decoded


# -- users ----------------------------------------------------------------------------


class UserSchema(Schema):
    id = fields.String(required=True, attribute="public_id")
    username = fields.String(required=True)
    display_name = fields.String(allow_none=True)
    is_admin = fields.Boolean(required=True)
    disabled = fields.Boolean(required=True)
    totp_active = fields.Boolean(required=True)
    cps_id = fields.String(allow_none=True)
    locked_until = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class UserCreateSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=190))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=12))
    display_name = fields.String(load_default=None, validate=validate.Length(max=190))
    is_admin = fields.Boolean(load_default=False)
    cps_id = fields.String(load_default=None, validate=validate.Length(min=1, max=64))


class UserPatchSchema(Schema):
    """Any subset. `password` or `reset_otp: true` end every session of the user at once."""

    display_name = fields.String(allow_none=True, validate=validate.Length(max=190))
    is_admin = fields.Boolean()
    disabled = fields.Boolean()
    password = fields.String(load_only=True, validate=validate.Length(min=12))
    reset_otp = fields.Boolean()
    cps_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=64))


class UserPageSchema(Schema):
    items = fields.List(fields.Nested(UserSchema), required=True)
    next = fields.String(allow_none=True, required=True)


# -- mailboxes ------------------------------------------------------------------------


class ServerInSchema(Schema):
    host = fields.String(required=True, validate=validate.Length(min=1, max=255))
    port = fields.Integer(required=True, validate=validate.Range(min=1, max=65535))
    security = fields.String(required=True, validate=validate.OneOf(SECURITY))
    auth = fields.String(required=True, validate=validate.OneOf(AUTH_MODES))
    username = fields.String(load_default=None, validate=validate.Length(min=1, max=320))
    secret = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=4096))
    certificate = Base64Bytes(load_only=True, allow_none=True)
    token_url = fields.Url(allow_none=True, validate=validate.Length(max=500))
    client_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))


class ServerPatchSchema(Schema):
    """Any subset of a server's settings; `secret: null` removes the secret."""

    host = fields.String(validate=validate.Length(min=1, max=255))
    port = fields.Integer(validate=validate.Range(min=1, max=65535))
    security = fields.String(validate=validate.OneOf(SECURITY))
    auth = fields.String(validate=validate.OneOf(AUTH_MODES))
    username = fields.String(validate=validate.Length(min=1, max=320))
    secret = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=4096))
    certificate = Base64Bytes(load_only=True, allow_none=True)
    token_url = fields.Url(allow_none=True, validate=validate.Length(max=500))
    client_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))


class ServerOutSchema(Schema):
    host = fields.String()
    port = fields.Integer()
    security = fields.String()
    auth = fields.String()
    username = fields.String(allow_none=True)
    secret_set = fields.Boolean(required=True)
    certificate_set = fields.Boolean()
    token_url = fields.String(allow_none=True)
    client_id = fields.String(allow_none=True)


def _header_value(value: str | None) -> None:
    """A mailbox's display name is sent in From: one line, even once RFC 2047 decoded."""
    if value is not None and not is_safe_header_value(value):
        raise ValidationError(SINGLE_LINE)


class MailboxCreateSchema(Schema):
    address = fields.Email(required=True, validate=validate.Length(max=320))
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    display_name = fields.String(
        load_default=None, validate=[validate.Length(max=190), _header_value]
    )
    imap = fields.Nested(ServerInSchema, required=True)
    smtp = fields.Nested(ServerInSchema, load_default=None, allow_none=True)
    max_message_bytes = fields.Integer(load_default=None, validate=validate.Range(min=1))


class MailboxPatchSchema(Schema):
    """Any subset; `imap`/`smtp` take any subset of their fields. IMAP changes restart sync."""

    kind = fields.String(validate=validate.OneOf(KINDS))
    display_name = fields.String(
        allow_none=True, validate=[validate.Length(max=190), _header_value]
    )
    imap = fields.Nested(ServerPatchSchema)
    smtp = fields.Nested(ServerPatchSchema, allow_none=True)
    max_message_bytes = fields.Integer(allow_none=True, validate=validate.Range(min=1))


class AdminSyncSchema(Schema):
    state = fields.String(required=True)
    detail = fields.String(allow_none=True)
    changed_at = fields.DateTime(allow_none=True)
    settings_version = fields.Integer()


class MemberSchema(Schema):
    user_id = fields.String(required=True)
    username = fields.String(required=True)
    role = fields.String(required=True)


class AdminMailboxSchema(Schema):
    id = fields.String(required=True)
    address = fields.String(required=True)
    kind = fields.String(required=True)
    display_name = fields.String(allow_none=True)
    imap = fields.Nested(ServerOutSchema, required=True)
    smtp = fields.Nested(ServerOutSchema, allow_none=True)
    max_message_bytes = fields.Integer(allow_none=True)
    sync = fields.Nested(AdminSyncSchema, required=True)
    members = fields.List(fields.Nested(MemberSchema))
    created_at = fields.DateTime()


class MailboxPageSchema(Schema):
    items = fields.List(fields.Nested(AdminMailboxSchema), required=True)
    next = fields.String(allow_none=True, required=True)


class CertificateFileSchema(Schema):
    certificate = Upload(required=True)


class CertificateFormSchema(Schema):
    """The .p12 passphrase; omitted, the mailbox's stored secret is used."""

    passphrase = fields.String(load_default=None, validate=validate.Length(max=4096))


class RoleSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


# -- devices --------------------------------------------------------------------------


class AdminDeviceSchema(Schema):
    id = fields.String(required=True)
    user_id = fields.String(required=True)
    username = fields.String(required=True)
    name = fields.String(required=True)
    platform = fields.String(required=True)
    auth_method = fields.String()
    has_push_token = fields.Boolean()
    authenticated_at = fields.DateTime()
    created_at = fields.DateTime()
    last_seen_at = fields.DateTime()
    last_push_at = fields.DateTime(allow_none=True)
    last_push_status = fields.String(allow_none=True)


class DeviceArgsSchema(PageArgsSchema):
    user = fields.String(load_default=None, validate=validate.Length(max=32))


class DevicePageSchema(Schema):
    items = fields.List(fields.Nested(AdminDeviceSchema), required=True)
    next = fields.String(allow_none=True, required=True)


# -- audit ----------------------------------------------------------------------------


class AuditArgsSchema(PageArgsSchema):
    actor = fields.String(load_default=None, validate=validate.Length(max=64))
    action = fields.String(load_default=None, validate=validate.Length(max=64))
    mailbox = fields.String(load_default=None, validate=validate.Length(max=32))
    since = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    until = fields.AwareDateTime(load_default=None, default_timezone=UTC)


class AuditRecordSchema(Schema):
    seq = fields.Integer(required=True, attribute="id")
    occurred_at = fields.DateTime(required=True)
    actor = fields.String(required=True)
    device = fields.String(allow_none=True)
    action = fields.String(required=True)
    outcome = fields.String(required=True)
    target_type = fields.String(allow_none=True)
    target = fields.String(allow_none=True)
    mailbox = fields.String(allow_none=True)
    source_ip = fields.String(allow_none=True)
    details = fields.Dict()
    hash = fields.String(required=True)
    prev_hash = fields.String(required=True)


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditRecordSchema), required=True)
    next = fields.String(allow_none=True, required=True)


class CheckpointVerdictSchema(Schema):
    ok = fields.Boolean(required=True)
    checked = fields.Integer(required=True)
    tree_size = fields.Integer(required=True)
    reason = fields.String(allow_none=True)


class VerifySchema(Schema):
    ok = fields.Boolean(required=True)
    records = fields.Integer(required=True)
    first_bad = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    checkpoints = fields.Nested(CheckpointVerdictSchema, required=True)


class ExportArgsSchema(AuditArgsSchema):
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=5000))


# -- certificates ---------------------------------------------------------------------


class CertificateSchema(Schema):
    id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["client", "ca", "card-ca", "crl"]))
    mailbox_id = fields.String(allow_none=True)
    subject = fields.String(allow_none=True)
    issuer = fields.String(allow_none=True)
    not_after = fields.DateTime(allow_none=True)
    days_left = fields.Integer(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(["ok", "warning", "error"]))
    detail = fields.String(allow_none=True)
