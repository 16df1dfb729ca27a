"""Device payloads (API.md, "Devices")."""

from marshmallow import Schema, fields, validate

from backend.accounts.devices import PLATFORMS


class DeviceSchema(Schema):
    id = fields.String(required=True, attribute="public_id")
    name = fields.String(required=True)
    platform = fields.String(required=True)
    has_push_token = fields.Method("_has_token")
    created_at = fields.DateTime()
    last_seen_at = fields.DateTime()
    last_push_at = fields.DateTime(allow_none=True)
    last_push_status = fields.String(allow_none=True)
    current = fields.Boolean(dump_default=False)

    def _has_token(self, device: object) -> bool:
        return bool(getattr(device, "push_token", None))


class PushTokenSchema(Schema):
    push_token = fields.String(required=True, validate=validate.Length(min=1, max=4096))
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))
