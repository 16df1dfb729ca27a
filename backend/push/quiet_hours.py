"""A user's quiet hours: a daily local-time window in which non-urgent pushes wait.

The window may cross midnight (22:00 to 07:00). On call, or an urgent message
(Importance: high, X-Priority: 1), overrides it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

log = logging.getLogger("estafette.push")

MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Minutes after local midnight, in an IANA time zone (e.g. Europe/Paris)."""

    start_minute: int
    end_minute: int
    timezone: str

    def __post_init__(self) -> None:
        for minute in (self.start_minute, self.end_minute):
            if not 0 <= minute < MINUTES_PER_DAY:
                raise ValueError("quiet hours are minutes between 00:00 and 23:59")
        ZoneInfo(self.timezone)  # ZoneInfoNotFoundError (a KeyError) for an unknown zone

    def ends_after(self, now: datetime) -> datetime | None:
        """When the quiet hours `now` falls in end (UTC), or None when `now` is not quiet."""
        if self.start_minute == self.end_minute:
            return None
        local = now.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        if self.start_minute < self.end_minute:
            quiet = self.start_minute <= minute < self.end_minute
        else:
            quiet = minute >= self.start_minute or minute < self.end_minute
        if not quiet:
            return None
        end = local.replace(
            hour=self.end_minute // 60, minute=self.end_minute % 60, second=0, microsecond=0
        )
        if end <= local:
            end += timedelta(days=1)  # wall-clock arithmetic: right across DST changes
        return end.astimezone(UTC)


def quiet_hours_of(
    start_minute: int | None, end_minute: int | None, timezone: str | None
) -> QuietHours | None:
    """The user's quiet hours from their stored columns; None when none are set.

    A value the API would have refused (a zone this system no longer knows) must not
    block the user's pushes: it counts as no quiet hours.
    """
    if start_minute is None or end_minute is None or not timezone:
        return None
    try:
        return QuietHours(start_minute, end_minute, timezone)
    except (KeyError, ValueError):
        log.warning("ignoring unusable quiet hours (zone or minutes out of range)")
        return None
