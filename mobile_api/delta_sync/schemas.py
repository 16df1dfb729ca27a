"""Delta sync representations (API.md, "Mailboxes and messages": `GET /sync`)."""

from marshmallow import Schema, fields, validate

from mobile_api.mailboxes.schemas import EnvelopeSchema
from mobile_api.pagination import MAX_LIMIT


class SyncArgsSchema(Schema):
    since = fields.String(load_default=None, validate=validate.Length(min=1, max=8192))
    limit = fields.Integer(load_default=MAX_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))


class ChangedMessageSchema(EnvelopeSchema):
    """An envelope for `upsert`; for `delete`, only `id` and `mailbox_id`."""

    folder = fields.String()
    date = fields.DateTime()


class ChangeSchema(Schema):
    op = fields.String(required=True, validate=validate.OneOf(["upsert", "delete"]))
    message = fields.Nested(ChangedMessageSchema, required=True)


class SyncSchema(Schema):
    state = fields.String(required=True, metadata={"description": "Pass as `since` next time."})
    changes = fields.List(fields.Nested(ChangeSchema), required=True)
    more = fields.Boolean(
        required=True,
        metadata={"description": "More changes wait: call again at once with this `state`."},
    )
    removed_mailboxes = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Mailboxes no longer visible: drop all their messages."},
    )
