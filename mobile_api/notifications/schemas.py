"""Notification settings payloads: quiet hours and the on-call switch."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate, validates

_HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class QuietHoursSchema(Schema):
    start = fields.String(
        required=True,
        validate=validate.Regexp(_HH_MM, error="a local time as HH:MM"),
        metadata={"example": "22:00"},
    )
    end = fields.String(
        required=True,
        validate=validate.Regexp(_HH_MM, error="a local time as HH:MM"),
        metadata={"example": "07:00"},
    )
    timezone = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "IANA time zone", "example": "Europe/Paris"},
    )

    @validates("timezone")
    def _known_zone(self, value: str, **_kwargs: object) -> None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationError("an IANA time zone, e.g. Europe/Paris") from exc


class NotificationSettingsSchema(Schema):
    quiet_hours = fields.Nested(
        QuietHoursSchema,
        required=True,
        allow_none=True,
        metadata={"description": "pushes wait in this daily window; null: none"},
    )
    on_call = fields.Boolean(
        required=True, metadata={"description": "on call: quiet hours do not apply"}
    )
