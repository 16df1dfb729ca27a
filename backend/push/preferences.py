"""A user's notification preferences: quiet hours and the on-call switch."""

from __future__ import annotations

from backend.push.quiet_hours import QuietHours, quiet_hours_of
from backend.storage.models import User


def quiet_hours(user: User) -> QuietHours | None:
    """The user's quiet hours, or None when pushes may come at any time."""
    return quiet_hours_of(user.quiet_start_minute, user.quiet_end_minute, user.quiet_timezone)


def set_preferences(*, user: User, quiet: QuietHours | None, on_call: bool) -> None:
    """Store both settings; the dispatcher reads them at each push."""
    user.quiet_start_minute = quiet.start_minute if quiet else None
    user.quiet_end_minute = quiet.end_minute if quiet else None
    user.quiet_timezone = quiet.timezone if quiet else None
    user.on_call = on_call
