"""Sign-in payloads (API.md, "Sign-in")."""

import base64
import binascii
import re

from marshmallow import Schema, ValidationError, fields, validate

from backend.accounts.devices import PLATFORMS


class LoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=190))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=1024))


class LoginResultSchema(Schema):
    mfa_token = fields.String(required=True)
    mfa = fields.List(fields.String(), required=True)
    enrollment_required = fields.Boolean(required=True)


class EnrollResultSchema(Schema):
    secret = fields.String(required=True)
    otpauth_uri = fields.String(required=True)
    qr_svg = fields.String(required=True)


# Six ASCII digits (TOTP), or a recovery code: four groups of four base32 characters.
# Written out, never \d or str.isdigit(), which also take Arabic-Indic or full-width digits.
# ECMA-262 syntax and no flags, as the OpenAPI document publishes the pattern as it is.
ONE_TIME_CODE = re.compile(r"^(?:[0-9]{6}|[A-Za-z2-7]{4}(?:-[A-Za-z2-7]{4}){3})$")


class _WholeMatch(validate.Regexp):
    """A Regexp the whole value must match: Python's `$` also matches before a final newline."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


def _code_field() -> fields.String:
    return fields.String(
        required=True,
        validate=_WholeMatch(
            ONE_TIME_CODE, error="Six digits 0-9, or a recovery code such as abcd-efgh-ijkl-mnop."
        ),
        metadata={"description": "a TOTP code (six digits) or a recovery code"},
    )


class CodeSchema(Schema):
    code = _code_field()


class ActivateResultSchema(Schema):
    recovery_codes = fields.List(fields.String(), required=True)


class PushKeyField(fields.String):
    """A device's preview key: base64 (standard or urlsafe) of exactly 32 bytes."""

    def _deserialize(self, value, attr, data, **kwargs) -> bytes:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationError("base64 of 32 bytes") from exc
        if len(key) != 32:
            raise ValidationError("base64 of 32 bytes")
        return key


class DeviceInSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))
    push_token = fields.String(validate=validate.Length(max=4096), allow_none=True)
    push_key = PushKeyField(
        allow_none=True,
        metadata={
            "description": "base64 of 32 random bytes: the key encrypted previews are sealed "
            "with (kept only when the establishment enables previews)"
        },
    )


class OtpSignInSchema(Schema):
    code = _code_field()
    device = fields.Nested(DeviceInSchema, required=True)


class SessionSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)
    device_id = fields.String(required=True)


class CpsSignInSchema(Schema):
    device = fields.Nested(
        DeviceInSchema, load_default=lambda: {"name": "Poste CPS", "platform": "web"}
    )
