"""Message representations: the envelope plus what only opening the message shows."""

from marshmallow import Schema, fields, validate

from mobile_api.mailboxes.schemas import EnvelopeSchema, PatientSchema


class DocumentSchema(Schema):
    """A CDA (or other) document inside an IHE_XDM.ZIP, from its XDS DocumentEntry."""

    title = fields.String(allow_none=True)
    code = fields.String(allow_none=True, metadata={"description": "XDS typeCode (LOINC)"})
    code_display = fields.String(allow_none=True)
    class_code = fields.String(allow_none=True)
    content_type = fields.String(required=True)
    part = fields.String(required=True, metadata={"description": "e.g. 2/xdm/1"})
    patient = fields.Nested(PatientSchema, allow_none=True)


class AttachmentSchema(Schema):
    part = fields.String(required=True, metadata={"description": "IMAP section, e.g. 2"})
    filename = fields.String(allow_none=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)
    documents = fields.List(fields.Nested(DocumentSchema), allow_none=True)
    warnings = fields.List(fields.String())


class MessageSchema(EnvelopeSchema):
    text = fields.String(allow_none=True)
    html = fields.String(allow_none=True, metadata={"description": "sanitized HTML"})
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    attachments = fields.List(fields.Nested(AttachmentSchema))
    warnings = fields.List(
        fields.String(),
        metadata={"description": "malformed, unknown_charset, charset_mismatch, ..."},
    )


class FlagsSchema(Schema):
    seen = fields.Boolean()
    flagged = fields.Boolean()


class MoveSchema(Schema):
    folder = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "a folder of GET /mailboxes/{id}/folders"},
    )
