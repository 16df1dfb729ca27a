"""What a client sends to compose a message, and what it gets back."""

from marshmallow import Schema, ValidationError, fields, validate

from backend.outgoing.headers import SINGLE_LINE, is_safe_header_value

MAX_RECIPIENTS = 100
# MSSanté addresses are plain ASCII (no SMTPUTF8, no quoted local parts).
_ADDRESS = validate.Regexp(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$",
    error="An MSSanté address (ASCII, name@domain).",
)


def _utf8(value: str) -> None:
    """JSON may carry lone surrogates, which no mail can: refuse them here, not as a 500."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Not valid Unicode text.") from None


def _one_line(value: str) -> None:
    """A header value never holds a line break nor NUL, even once RFC 2047 decoded."""
    _utf8(value)
    if not is_safe_header_value(value):
        raise ValidationError(SINGLE_LINE)


def _address_field() -> fields.Email:
    return fields.Email(validate=[validate.Length(max=254), _ADDRESS])


class SendMessageSchema(Schema):
    """JSON body, or the same fields as multipart form fields next to `attachments` files."""

    to = fields.List(
        _address_field(),
        required=True,
        validate=validate.Length(min=1, max=MAX_RECIPIENTS),
    )
    cc = fields.List(
        _address_field(),
        load_default=list,
        validate=validate.Length(max=MAX_RECIPIENTS),
    )
    bcc = fields.List(
        _address_field(),
        load_default=list,
        validate=validate.Length(max=MAX_RECIPIENTS),
        metadata={"description": "sent to, never shown to the other recipients"},
    )
    subject = fields.String(required=True, validate=[validate.Length(max=900), _one_line])
    text = fields.String(load_default="", validate=_utf8)
    html = fields.String(
        load_default=None,
        allow_none=True,
        validate=_utf8,
        metadata={
            "description": "rich text, sent with `text` as its plain alternative (derived "
            "from it when empty); sanitised first: no script, form or remote content"
        },
    )
    in_reply_to = fields.String(
        load_default=None, allow_none=True, validate=[validate.Length(min=1, max=32), _one_line]
    )
    reply_all = fields.Boolean(
        load_default=False,
        metadata={"description": "with in_reply_to: the original's other recipients in cc"},
    )
    forward_of = fields.String(
        load_default=None,
        allow_none=True,
        validate=[validate.Length(min=1, max=32), _one_line],
        metadata={"description": "a message id: its text quoted, its attachments kept"},
    )
    request_read_receipt = fields.Boolean(load_default=False)
    signature = fields.Boolean(
        load_default=True, metadata={"description": "add the user's signature (GET /me/signature)"}
    )
    urgent = fields.Boolean(
        load_default=False, metadata={"description": "Importance: high, X-Priority: 1"}
    )


# OpenAPI for the multipart variant (files cannot be described by a marshmallow field).
MULTIPART_BODY = {
    "type": "object",
    "required": ["to", "subject"],
    "properties": {
        "to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1},
        "cc": {"type": "array", "items": {"type": "string", "format": "email"}},
        "bcc": {"type": "array", "items": {"type": "string", "format": "email"}},
        "subject": {"type": "string", "maxLength": 900},
        "text": {"type": "string"},
        "html": {"type": "string"},
        "in_reply_to": {"type": "string", "maxLength": 32},
        "reply_all": {"type": "boolean"},
        "forward_of": {"type": "string", "maxLength": 32},
        "request_read_receipt": {"type": "boolean"},
        "signature": {"type": "boolean"},
        "urgent": {"type": "boolean"},
        "attachments": {"type": "array", "items": {"type": "string", "format": "binary"}},
    },
}


class SendWarningSchema(Schema):
    code = fields.String(
        required=True,
        metadata={"description": "`recipient_not_in_directory`: not in the national directory"},
    )
    field = fields.String(required=True, metadata={"description": "to, cc or bcc"})
    address = fields.String(required=True)


class SentMessageSchema(Schema):
    id = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "The Sent copy's message id; null if it could not be stored"},
    )
    message_id = fields.String(required=True, metadata={"description": "The Message-ID header"})
    dsn_requested = fields.Boolean(required=True)
    sent_copy = fields.Boolean(required=True)
    warnings = fields.List(
        fields.Nested(SendWarningSchema),
        required=True,
        metadata={"description": "sent anyway, but worth a look (empty when all is well)"},
    )


class ReadReceiptSchema(Schema):
    message_id = fields.String(required=True, metadata={"description": "The MDN's Message-ID"})


class DraftSchema(Schema):
    """A draft as far as it goes: every field may still be empty."""

    to = fields.List(
        _address_field(), load_default=list, validate=validate.Length(max=MAX_RECIPIENTS)
    )
    cc = fields.List(
        _address_field(), load_default=list, validate=validate.Length(max=MAX_RECIPIENTS)
    )
    bcc = fields.List(
        _address_field(), load_default=list, validate=validate.Length(max=MAX_RECIPIENTS)
    )
    subject = fields.String(load_default="", validate=[validate.Length(max=900), _one_line])
    text = fields.String(load_default="", validate=_utf8)


class SavedDraftSchema(Schema):
    id = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "the draft's id now (a new one after each save)"},
    )
    message_id = fields.String(required=True)


class SignatureSchema(Schema):
    text = fields.String(
        required=True,
        validate=[validate.Length(max=2000), _utf8],
        metadata={"description": "plain text; empty for none"},
    )
