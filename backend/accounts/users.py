"""User accounts and their second factor. Service functions take the session as `db=`."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend import errors
from backend.accounts import passwords, totp
from backend.storage.models import RecoveryCode, User, utcnow

MAX_OTP_FAILURES = 5
BASE_LOCK_SECONDS = 60
MAX_LOCK_SECONDS = 3600
RECOVERY_CODES = 10


def create_user(
    *,
    db: Session,
    username: str,
    password: str,
    is_admin: bool = False,
    display_name: str | None = None,
) -> User:
    """Create an account; the username is unique, the password hashed with Argon2id."""
    username = username.strip().lower()
    if not username or len(username) > 190:
        raise errors.ValidationFailed({"username": ["Between 1 and 190 characters."]})
    if len(password) < 12:
        raise errors.ValidationFailed({"password": ["At least 12 characters."]})
    if db.scalar(select(User.id).where(User.username == username)) is not None:
        raise errors.Conflict(f"user {username} already exists")
    user = User(
        username=username,
        password_hash=passwords.hash_password(password),
        is_admin=is_admin,
        display_name=display_name,
    )
    db.add(user)
    db.flush()
    return user


def find_user(*, db: Session, username: str) -> User | None:
    return db.scalar(select(User).where(User.username == username.strip().lower()))


def find_user_by_cps_id(*, db: Session, professional_id: str) -> User | None:
    return db.scalar(select(User).where(User.cps_id == professional_id))


def get_user(*, db: Session, public_id: str) -> User:
    user = db.scalar(select(User).where(User.public_id == public_id))
    if user is None:
        raise errors.NotFound("no such user")
    return user


def authenticate_password(*, db: Session, username: str, password: str) -> User:
    """Check the first factor. Same work whether or not the user exists (no enumeration)."""
    user = find_user(db=db, username=username)
    ok = passwords.verify_password(user.password_hash if user else None, password)
    if not ok or user is None or user.disabled:
        raise errors.InvalidCredentials()
    ensure_not_locked(user)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    return user


def ensure_not_locked(user: User) -> None:
    if user.locked_until is not None and user.locked_until > utcnow():
        remaining = int((user.locked_until - utcnow()).total_seconds()) + 1
        raise errors.Locked(retry_after=remaining)


def begin_enrolment(*, db: Session, user: User) -> str:
    """A fresh TOTP secret, stored encrypted and inactive until a first code matches."""
    if user.totp_active:
        raise errors.Conflict("two-factor authentication is already active")
    user.totp_secret = totp.new_secret()
    user.totp_last_step = 0
    return user.totp_secret


def activate_totp(*, db: Session, user: User, code: str) -> list[str]:
    """Turn TOTP on once the first code matches; return ten single-use recovery codes."""
    if user.totp_secret is None or user.totp_active:
        raise errors.OtpNotEnrolled("start enrolment first")
    _consume_code(user, code)
    user.totp_active = True
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    for code_value in codes:
        db.add(RecoveryCode(user_id=user.id, code_hash=_recovery_digest(code_value)))
    return codes


def _new_recovery_code() -> str:
    """80 random bits as four groups of base32: high entropy, so a plain SHA-256 is enough."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _recovery_digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().encode()).hexdigest()


def verify_second_factor(*, db: Session, user: User, code: str) -> None:
    """Accept a TOTP code (once per time step) or an unused recovery code."""
    ensure_not_locked(user)
    if not user.totp_active or user.totp_secret is None:
        raise errors.OtpNotEnrolled()
    if "-" in code and _use_recovery_code(db=db, user=user, code=code):
        user.failed_otp_count = 0
        return
    _consume_code(user, code)
    user.failed_otp_count = 0
    user.lockouts = 0


def _consume_code(user: User, code: str) -> None:
    step = totp.matching_step(user.totp_secret, code)
    if step is None:
        _count_failure(user)
        raise errors.OtpInvalid()
    if step <= user.totp_last_step:
        _count_failure(user)
        raise errors.OtpReplayed()
    user.totp_last_step = step


def _count_failure(user: User) -> None:
    """Five wrong codes lock the account, for twice as long each time (capped at 1 h)."""
    user.failed_otp_count += 1
    if user.failed_otp_count >= MAX_OTP_FAILURES:
        seconds = min(BASE_LOCK_SECONDS * 2**user.lockouts, MAX_LOCK_SECONDS)
        user.locked_until = utcnow() + timedelta(seconds=seconds)
        user.lockouts += 1
        user.failed_otp_count = 0
        raise errors.Locked(retry_after=seconds, detail="Too many wrong codes", newly_locked=True)


def _use_recovery_code(*, db: Session, user: User, code: str) -> bool:
    row = db.scalar(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _recovery_digest(code),
            RecoveryCode.used_at.is_(None),
        )
    )
    if row is None:
        return False
    row.used_at = utcnow()
    return True
