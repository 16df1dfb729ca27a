"""RFC 6238 TOTP with pyotp: one step of drift, and each time step accepted only once."""

from __future__ import annotations

import hmac
import io
import time
from datetime import UTC, datetime

import pyotp
import segno

ISSUER = "Estafette"
DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The otpauth:// URI as an SVG QR code the app can show during enrolment."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False)
    return buffer.getvalue().decode()


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The latest time step whose code equals `code` within the allowed drift, or None.

    The latest: two steps' six digits can be the same (one chance in a million), and the
    earlier one may be the step already used; the code is not a replay for that."""
    # isdigit() alone takes Arabic-Indic digits, which compare_digest refuses with TypeError.
    if not code or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(_as_datetime(now))
    for step in range(current + DRIFT_STEPS, current - DRIFT_STEPS - 1, -1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _as_datetime(now: float | None) -> datetime:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC)
