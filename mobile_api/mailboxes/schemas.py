"""Mailbox and envelope representations (API.md, "Mailboxes and messages")."""

from marshmallow import Schema, fields, validate

from backend.store.folders import ROLES as FOLDER_ROLES
from mobile_api.pagination import PageArgsSchema


class SyncStateSchema(Schema):
    state = fields.String(
        required=True,
        metadata={
            "description": "ok, connecting, error, or reauth_required: an oauth_user "
            "mailbox whose owner must sign in with their provider again"
        },
    )
    detail = fields.String(allow_none=True)


class MailboxSchema(Schema):
    id = fields.String(required=True)
    address = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["PER", "ORG", "APP", "CAB"]))
    display_name = fields.String(allow_none=True)
    role = fields.String(required=True)
    unread = fields.Integer(required=True)
    total = fields.Integer(required=True)
    sync = fields.Nested(SyncStateSchema, required=True)


class FolderSchema(Schema):
    name = fields.String(required=True, metadata={"description": "the server's folder name"})
    role = fields.String(
        allow_none=True,
        validate=validate.OneOf(FOLDER_ROLES),
        metadata={"description": "RFC 6154 special use; null for a personal folder"},
    )
    watched = fields.Boolean(
        required=True, metadata={"description": "synced, and its new mail pushed"}
    )
    unread = fields.Integer(required=True)
    total = fields.Integer(required=True)


class FolderWatchSchema(Schema):
    folder = fields.String(required=True, validate=validate.Length(min=1, max=255))
    watched = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={"description": "null: back to the default (all but Junk and Trash)"},
    )


class AddressSchema(Schema):
    name = fields.String(allow_none=True)
    address = fields.String(allow_none=True)


class PatientSchema(Schema):
    ins = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    birth_date = fields.String(allow_none=True)


class ReceiptSchema(Schema):
    """A read (MDN) or delivery (DSN) report received for this message."""

    type = fields.String(
        required=True,
        metadata={"description": "read, deleted, processed, delivered, failed or delayed"},
    )
    at = fields.String(required=True, metadata={"format": "date-time"})  # stored as RFC 3339
    recipient = fields.String(allow_none=True)


class EnvelopeSchema(Schema):
    id = fields.String(required=True)
    mailbox_id = fields.String(required=True)
    folder = fields.String(required=True)
    subject = fields.String(allow_none=True)
    from_ = fields.Nested(AddressSchema, data_key="from", allow_none=True)
    to = fields.List(fields.Nested(AddressSchema))
    cc = fields.List(fields.Nested(AddressSchema))
    date = fields.DateTime(required=True)
    seen = fields.Boolean()
    flagged = fields.Boolean()
    answered = fields.Boolean()
    has_attachments = fields.Boolean()
    size = fields.Integer()
    mdn_requested = fields.Boolean()
    urgent = fields.Boolean(
        metadata={"description": "the sender marked it urgent (Importance, X-Priority, Priority)"}
    )
    malformed = fields.Boolean()
    patient = fields.Nested(PatientSchema, allow_none=True)
    receipts = fields.List(fields.Nested(ReceiptSchema))


_WORDS = validate.Length(min=1, max=200)


class MessageListArgsSchema(PageArgsSchema):
    """The listing, and the search when any criterion is given (pages alike)."""

    folder = fields.String(load_default="INBOX", validate=validate.Length(min=1, max=255))
    q = fields.String(
        validate=_WORDS,
        metadata={"description": "words in the subject, sender or recipients (the cache)"},
    )
    text = fields.String(
        validate=_WORDS,
        metadata={
            "description": "full text, bodies included: searched by the mailbox server "
            "(IMAP SEARCH TEXT, FUZZY where offered); 503 when it cannot be reached"
        },
    )
    sender = fields.String(data_key="from", validate=_WORDS)
    since = fields.DateTime(metadata={"description": "messages dated at or after"})
    unread = fields.Boolean()
    flagged = fields.Boolean()
    has_attachments = fields.Boolean()
    urgent = fields.Boolean()


class MessagePageSchema(Schema):
    items = fields.List(fields.Nested(EnvelopeSchema), required=True)
    next = fields.String(allow_none=True, required=True)
