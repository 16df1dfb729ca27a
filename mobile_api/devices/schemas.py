"""Device payloads (API.md, "Devices")."""

import base64
import binascii

from marshmallow import Schema, ValidationError, fields, validate

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


def _b64url_bytes(length: int, first: bytes = b"") -> validate.Validator:
    """A base64url value (padding optional) that decodes to `length` bytes."""

    def check(value: str) -> None:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ValidationError("Not base64url.") from exc
        if len(raw) != length or not raw.startswith(first):
            raise ValidationError(f"Must decode to {length} bytes.")

    return check


class SubscriptionKeysSchema(Schema):
    # RFC 8291 §3: the browser's P-256 key (uncompressed point) and its 16-byte secret.
    p256dh = fields.String(required=True, validate=_b64url_bytes(65, b"\x04"))
    auth = fields.String(required=True, validate=_b64url_bytes(16))


class WebPushSubscriptionSchema(Schema):
    """A browser's `PushSubscription.toJSON()`, as the Push API gives it."""

    endpoint = fields.Url(
        required=True,
        schemes={"https", "http"},
        require_tld=False,
        validate=validate.Length(max=2048),
    )
    expirationTime = fields.Integer(allow_none=True, load_default=None)  # the Push API's name
    keys = fields.Nested(SubscriptionKeysSchema, required=True)


class WebPushKeySchema(Schema):
    public_key = fields.String(
        required=True,
        metadata={
            "description": "The VAPID key (RFC 8292) for `applicationServerKey`: an "
            "uncompressed P-256 point, base64url."
        },
    )


class TestPushSchema(Schema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(("ok", "retrying", "pruned", "failed")),
        metadata={
            "description": "As `last_push_status`: `ok` (the provider accepted it), "
            "`retrying` (the provider is unreachable or busy), `pruned` (the token is "
            "gone: register again), `failed` (the provider refused the push itself)."
        },
    )
    code = fields.String(
        allow_none=True,
        metadata={"description": "The provider's error code, when not `ok`."},
    )
