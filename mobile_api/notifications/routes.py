"""The user's notification settings: quiet hours, and the on-call switch that overrides them.

Urgent messages (Importance: high, X-Priority: 1) ring whatever the settings say.
"""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from backend.push import preferences
from backend.push.quiet_hours import QuietHours
from backend.storage.models import User
from mobile_api.auditing import audited, note
from mobile_api.auth.tokens import session_required
from mobile_api.context import db
from mobile_api.notifications import schemas

blp = Blueprint(
    "notifications",
    __name__,
    url_prefix="/api/v1/me/notifications",
    description="Notification settings",
)


def _minute(hh_mm: str) -> int:
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


def _hh_mm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _settings(user: User) -> dict:
    quiet = preferences.quiet_hours(user)
    return {
        "quiet_hours": None
        if quiet is None
        else {
            "start": _hh_mm(quiet.start_minute),
            "end": _hh_mm(quiet.end_minute),
            "timezone": quiet.timezone,
        },
        "on_call": bool(user.on_call),
    }


@blp.get("")
@audited("user.notifications_read", target_type="user")
@blp.response(200, schemas.NotificationSettingsSchema)
@session_required
def get_settings() -> dict:
    """The user's quiet hours and on-call state."""
    note(target=g.user.public_id)
    return _settings(g.user)


@blp.put("")
@audited("user.notifications", target_type="user")
@blp.arguments(schemas.NotificationSettingsSchema)
@blp.response(200, schemas.NotificationSettingsSchema)
@session_required
def put_settings(body: dict) -> dict:
    """Replace the quiet hours (null: none) and the on-call switch."""
    window = body["quiet_hours"]
    quiet = (
        None
        if window is None
        else QuietHours(_minute(window["start"]), _minute(window["end"]), window["timezone"])
    )
    preferences.set_preferences(user=g.user, quiet=quiet, on_call=body["on_call"])
    db().commit()
    note(target=g.user.public_id, on_call=body["on_call"], quiet_hours=quiet is not None)
    return _settings(g.user)
