"""The directory search: what a client asks, and each hit it gets back."""

from marshmallow import Schema, fields, validate

from backend.directory.search import MAX_LIMIT


class DirectoryQuerySchema(Schema):
    q = fields.String(
        required=True,
        validate=validate.Length(min=1, max=200),
        metadata={
            "description": "what the user typed: words (prefixes, any accents), or the "
            "start of an address"
        },
    )
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=MAX_LIMIT))


class DirectoryHitSchema(Schema):
    address = fields.String(required=True)
    kind = fields.String(
        required=True, metadata={"description": "PER (a person) or ORG, APP, CAB (not a person)"}
    )
    name = fields.String(allow_none=True, required=True)
    profession = fields.String(allow_none=True)
    specialty = fields.String(allow_none=True)
    organisation = fields.String(allow_none=True)
    service = fields.String(allow_none=True)
    street = fields.String(allow_none=True)
    postcode = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    national_id = fields.String(allow_none=True, metadata={"description": "RPPS or ADELI"})
    rank = fields.String(
        required=True,
        metadata={"description": "correspondent, establishment or directory: why it came first"},
    )


class DirectoryResultSchema(Schema):
    items = fields.List(fields.Nested(DirectoryHitSchema), required=True)
