"""User accounts and their second factor. Service functions take the session as `db=`.

Parallel requests must not get a one-time code accepted twice or slip past the lockout, so
every check-and-change of a TOTP step, a recovery code or the failure counter is one
conditional UPDATE, judged by the rows it changed (the row lock it takes also orders the
requests until the transaction ends). The in-memory `User` is never the judge.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, or_, select, update
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
    """Refuse with `locked` (and Retry-After) while a lock from wrong codes lasts."""
    if user.locked_until is not None and user.locked_until > utcnow():
        remaining = int((user.locked_until - utcnow()).total_seconds()) + 1
        raise errors.Locked(retry_after=remaining)


def bump_credentials_version(*, db: Session, user: User) -> None:
    """Make every token issued so far (mfa, access, refresh) stale: they carry the version.

    The one way a credential change reaches the tokens: a password or TOTP reset, a
    disable and a card change all call it, so a token taken before them opens nothing.
    """
    # Incremented in SQL, so two changes at once both count; the attribute reloads after.
    user.credentials_version = User.credentials_version + 1
    db.flush()


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
    ensure_not_locked(user)
    # Activates in the same statement, so only one of parallel activations writes codes.
    _consume_code(db=db, user=user, code=code, activate=True)
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
        _reset_failures(db=db, user=user, lockouts=False)
        return
    _consume_code(db=db, user=user, code=code)
    _reset_failures(db=db, user=user, lockouts=True)


def _not_locked() -> ColumnElement[bool]:
    return or_(User.locked_until.is_(None), User.locked_until <= utcnow())


def _update_user(
    db: Session, user: User, *conditions: ColumnElement[bool], **values: object
) -> CursorResult[Any]:
    """One conditional UPDATE of the user's row; the stale attributes reload on next use."""
    result = db.execute(
        update(User)
        .where(User.id == user.id, *conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.expire(user, [*values, "locked_until"])
    return result


def _consume_code(*, db: Session, user: User, code: str, activate: bool = False) -> None:
    """Claim the code's time step: only a step later than the last one used is taken."""
    step = totp.matching_step(user.totp_secret, code)
    if step is None:
        _count_failure(db=db, user=user)
        raise errors.OtpInvalid()
    values: dict[str, object] = {"totp_last_step": step}
    if activate:
        values["totp_active"] = True
    claimed = _update_user(
        db,
        user,
        User.totp_last_step < step,
        User.totp_active.is_(not activate),
        _not_locked(),
        **values,
    ).rowcount
    if claimed == 1:
        return
    ensure_not_locked(user)  # locked by a parallel request in the meantime
    _count_failure(db=db, user=user)
    raise errors.OtpReplayed()


def _count_failure(*, db: Session, user: User) -> None:
    """Five wrong codes lock the account, for twice as long each time (capped at 1 h).

    The count is incremented in SQL and read back in the same statement, so each of N
    parallel wrong codes counts once, and exactly one of them sets the lock.
    """
    counted = db.execute(
        update(User)
        .where(User.id == user.id, _not_locked())
        .values(failed_otp_count=User.failed_otp_count + 1)
        .returning(User.failed_otp_count, User.lockouts)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    db.expire(user, ["failed_otp_count", "lockouts", "locked_until"])
    if counted is None:
        ensure_not_locked(user)  # a parallel request has just locked the account
        return
    failures, lockouts = counted
    if failures < MAX_OTP_FAILURES:
        return
    seconds = min(BASE_LOCK_SECONDS * 2**lockouts, MAX_LOCK_SECONDS)
    locked = _update_user(
        db,
        user,
        User.failed_otp_count >= MAX_OTP_FAILURES,
        User.lockouts == lockouts,
        locked_until=utcnow() + timedelta(seconds=seconds),
        lockouts=User.lockouts + 1,
        failed_otp_count=0,
    ).rowcount
    if locked == 1:
        raise errors.Locked(retry_after=seconds, detail="Too many wrong codes", newly_locked=True)
    ensure_not_locked(user)


def _reset_failures(*, db: Session, user: User, lockouts: bool) -> None:
    """A right code clears the count (in SQL: the loaded value may be stale)."""
    values: dict[str, object] = {"failed_otp_count": 0}
    if lockouts:
        values["lockouts"] = 0
    _update_user(db, user, **values)


def _use_recovery_code(*, db: Session, user: User, code: str) -> bool:
    """Mark the code used if it still is unused: one of parallel uses wins."""
    used = db.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _recovery_digest(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return used.rowcount == 1
