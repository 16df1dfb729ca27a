"""Sensitive fields are sealed at rest, bound to their column and their row."""

from __future__ import annotations

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import StatementError

from backend.storage.database import session_scope
from backend.storage.encryption import DataKeyError, decrypt, encrypt, set_data_key
from backend.storage.models import Device, User
from tests.factories import create_user


def test_a_sealed_value_opens_only_with_its_column_context() -> None:
    set_data_key(b"k" * 32)
    sealed = encrypt(b"JBSWY3DPEHPK3PXP", b"users.totp_secret")
    assert decrypt(sealed, b"users.totp_secret") == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(DataKeyError):
        decrypt(sealed, b"mailboxes.imap_secret")


def test_a_totp_secret_is_not_stored_in_clear(services) -> None:
    from backend.accounts import users

    create_user(services, "dora")
    with session_scope(services.sessions) as db:
        user = users.find_user(db=db, username="dora")
        secret = users.begin_enrolment(db=db, user=user)
    with services.engine.connect() as conn:
        raw = conn.execute(text("SELECT totp_secret FROM users WHERE username = 'dora'")).scalar()
    assert secret.encode() not in bytes(raw)


def _totp_secret_of(services, username: str) -> str | None:
    from backend.accounts import users

    with services.sessions() as db:
        return users.find_user(db=db, username=username).totp_secret


def test_a_secret_copied_into_another_row_does_not_open_there(services) -> None:
    from backend.accounts import users

    for username in ("alice", "bruno"):
        create_user(services, username)
        with session_scope(services.sessions) as db:
            users.begin_enrolment(db=db, user=users.find_user(db=db, username=username))
    # What a DBA could do: give Bruno Alice's TOTP secret, to sign in with her codes.
    with services.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE users SET totp_secret ="
                " (SELECT totp_secret FROM users WHERE username = 'alice')"
                " WHERE username = 'bruno'"
            )
        )

    assert _totp_secret_of(services, "alice")
    with pytest.raises(DataKeyError, match="moved from another row"):
        _totp_secret_of(services, "bruno")


def test_a_push_token_is_sealed_for_its_device(services) -> None:
    from backend.accounts import devices, users

    create_user(services, "carla")
    with session_scope(services.sessions) as db:
        user = users.find_user(db=db, username="carla")
        phone = devices.register_device(
            db=db, user=user, name="phone", platform="android", push_token="fcm-token-canary"
        )
        tablet = devices.register_device(db=db, user=user, name="tablet", platform="android")
        phone_id, tablet_id = phone.id, tablet.id
    with services.engine.begin() as conn:
        raw = conn.execute(
            text("SELECT push_token FROM devices WHERE id = :id"), {"id": phone_id}
        ).scalar()
        assert b"fcm-token-canary" not in bytes(raw)
        conn.execute(
            text("UPDATE devices SET push_token = :raw WHERE id = :id"),
            {"raw": raw, "id": tablet_id},
        )

    with services.sessions() as db:
        assert db.get(Device, phone_id).push_token == "fcm-token-canary"
        with pytest.raises(DataKeyError):
            _ = db.get(Device, tablet_id).push_token


def test_a_sealed_column_refuses_a_plaintext_written_past_the_model(services) -> None:
    create_user(services, "dany")
    with session_scope(services.sessions) as db, pytest.raises(StatementError, match="sealed"):
        db.execute(update(User).where(User.username == "dany").values(totp_secret="JBSWY3DP"))
    assert _totp_secret_of(services, "dany") is None
